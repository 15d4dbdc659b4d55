// Type declarations for scripts/kafka.mjs (plain ESM, so strict TypeScript can import it).

/** Options shared by startKafka/stopKafka/kafkaStatus. Each falls back to its env var, then a default. */
export interface KafkaOptions {
  /** Kafka version (LK_KAFKA_VERSION, default DEFAULT_KAFKA_VERSION). */
  version?: string;
  /** PLAINTEXT port on 127.0.0.1 (LK_KAFKA_PORT, default 9092); the controller listens on port + 1. */
  port?: number;
  /** State dir with data/, logs/, kafka.pid (LK_KAFKA_HOME, default <repo>/.lk/kafka). */
  home?: string;
  /** Jar cache (LK_KAFKA_CACHE, default ~/.cache/lambda-kappa/kafka-<version>). */
  cache?: string;
  /** Max JVM heap, e.g. '512m' (LK_KAFKA_HEAP). */
  heap?: string;
  /** How long start waits until produce+fetch work (LK_KAFKA_START_TIMEOUT_MS, default 90000). */
  timeoutMs?: number;
  /** Suppress progress messages (they go to stderr, prefixed "[kafka]"). */
  quiet?: boolean;
  /** Receives progress messages instead of stderr. */
  log?: (message: string) => void;
  /** Environment to read settings from and to pass to java/mvn (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** A listener beside PLAINTEXT and CONTROLLER, on 127.0.0.1 (advertised there too). */
export interface KafkaListener {
  /** Listener name, upper case (e.g. SASL_SSL, MTLS); its settings go in serverProperties as listener.name.<lower>.*. */
  name: string;
  port: number;
  protocol: 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';
}

export interface KafkaStartOptions extends KafkaOptions {
  /** CLI only: kill the half-started broker on SIGINT/SIGTERM. */
  handleSignals?: boolean;
  /** If no broker is running in `home`, delete its data dir first (atomic with the start; tests). */
  fresh?: boolean;
  /** Extra listeners (secured ones for tests); inter-broker and controller traffic stay on PLAINTEXT and CONTROLLER. */
  listeners?: KafkaListener[];
  /** Extra server.properties entries, written after the defaults (the last value of a key wins). */
  serverProperties?: Record<string, string>;
  /**
   * SCRAM credentials written at storage format time (kafka-storage format --add-scram), e.g.
   * 'SCRAM-SHA-512=[name=alice,password=alice-secret]'; only a fresh data dir is formatted.
   */
  scram?: string[];
}

export interface KafkaStopOptions extends KafkaOptions {
  /** Time between SIGTERM and SIGKILL (default 30000). */
  graceMs?: number;
  /** Evaluated while holding the start/stop lock of `home`; the broker is stopped only if it returns true. */
  onlyIf?: () => boolean | Promise<boolean>;
}

export interface KafkaStatus {
  running: boolean;
  /** JVM alive but the port does not answer yet. */
  starting?: boolean;
  /** '127.0.0.1:PORT' */
  brokers: string;
  pid: number | undefined;
  port: number;
  version: string;
  home: string;
  /** The broker's log4j file (logs/server.log under home). */
  logFile: string;
  startedAt?: string;
  /** Spawn-to-ready (produce+fetch) time of the last start, ms. */
  startupMs?: number;
  uptimeMs?: number;
  /** A pid file whose process is gone. */
  stalePid?: number;
}

export interface KafkaStartResult {
  running: true;
  /** '127.0.0.1:PORT', ready for kafkajs `brokers: [brokers]` / KAFKA_BROKERS. */
  brokers: string;
  pid: number;
  port: number;
  version: string;
  home: string;
  cache: string;
  logFile: string;
  /** true if a broker was already running in `home` and nothing was started. */
  alreadyRunning: boolean;
  /** Spawn-to-ready time, ms (for an already running broker: that of its own start). */
  startupMs?: number;
  /** Set when the jars were downloaded by this call: time taken, ms. */
  jarsResolvedMs?: number;
  /** true if the storage was formatted by this call (fresh data dir). */
  formatted?: boolean;
}

export interface KafkaStopResult {
  /** false if nothing was running. */
  stopped: boolean;
  pid: number | undefined;
  /** true if SIGKILL was needed. */
  killed?: boolean;
  /** true if `onlyIf` returned false. */
  skipped?: boolean;
  ms?: number;
}

/** Errors meant for people (install hints, broker log tail in `details`). */
export declare class KafkaScriptError extends Error {
  constructor(message: string, details?: string);
  details?: string;
}

export declare const DEFAULT_KAFKA_VERSION: string;
export declare const DEFAULT_KAFKA_PORT: number;
/** Topic used by the readiness probe. */
export declare const PROBE_TOPIC: string;

/** Starts the broker (no-op if already running in `home`); resolves when it accepts produce and fetch. */
export declare function startKafka(opts?: KafkaStartOptions): Promise<KafkaStartResult>;
/** SIGTERM, wait up to graceMs, then SIGKILL. Resolves `{ stopped: false }` if nothing ran. */
export declare function stopKafka(opts?: KafkaStopOptions): Promise<KafkaStopResult>;
/** Never rejects for "not running". */
export declare function kafkaStatus(opts?: KafkaOptions): Promise<KafkaStatus>;
/** Produces one message to PROBE_TOPIC (creating it if missing) and consumes it back; rejects on failure. */
export declare function probeKafka(brokers: string, opts?: { attemptTimeoutMs?: number }): Promise<void>;
/** Finds Java 17+ (JAVA_HOME, then PATH) or throws KafkaScriptError with an install hint. */
export declare function findJava(opts?: { env?: NodeJS.ProcessEnv }): { java: string; major: number };
/** Resolves the broker jars into <cache>/libs with Maven if they are not cached yet. */
export declare function ensureKafkaJars(opts?: KafkaOptions): Promise<{ libs: string; resolved: boolean; ms: number }>;
