/**
 * Broker outages: what the long-running commands (`lk speed`, `lk replay`, `lk batch`, `lk serve`,
 * `lk demo`) wait through, and what stops them. One module for the three things every layer
 * needs, so that they all decide alike:
 *
 * - `classifyLogError`: may retrying fix this failure of the log? Everything the broker or the
 *   network can do wrong is retried (unreachable, restarting, a coordinator loading or moving, a
 *   transaction aborted by the broker, a client left in a state only a new client clears); only
 *   what retrying cannot fix is fatal, each with a named error and one clear line: bad
 *   credentials or TLS settings (`LogAuthenticationError`, and the connection diagnosis's
 *   KafkaSecurityError, kafka/securityErrors.ts), missing permissions (`LogAuthorizationError`), a topic
 *   that is gone while the broker answers (`MissingTopicError`), and a transactional producer
 *   fenced by a newer owner while this instance still owns its partition (`ProducerFencedError`).
 *   Anything else (a full disk, a bug) is not the log's business: `unrelated`, handled as before.
 * - `Backoff`: capped exponential backoff with jitter, 250 ms doubling to 30 s.
 * - `LogHealth`: whether the log answers now, per broker list and process: one log line when it
 *   becomes unreachable and one when it is back, the readiness endpoints and the gauges
 *   `lk_kafka_reachable` and `lk_kafka_outages_total` read it, and a wait in a retry loop ends as
 *   soon as it is back. The Kafka adapter tells it when something failed as if the broker were
 *   gone, and gives it a probe that asks the broker directly (`kafka/kafkaLog.ts`).
 *
 * One-shot commands (`lk produce`, `lk batch run`, `lk topics`) keep the adapter's bounded retries
 * and fail with one line: they do not use the retry loop below. The argument for why nothing is
 * lost or counted twice across an outage is in docs/speed-layer.md ("Broker outages").
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Gauge, type Registry } from 'prom-client';
import { InfrastructureError, errorMessage } from '../errors.ts';
import { logger } from '../observability/logger.ts';
import type { EventLog } from './eventLog.ts';

/**
 * The transaction timeout of transactional producers: the broker aborts a transaction left open
 * this long (and bumps the producer's epoch). A producer that learns it was fenced from a
 * transaction older than this was fenced by that abort, not by a newer owner.
 */
export const TRANSACTION_TIMEOUT_MS = 60_000;

// ------------------------------------------------------------------ named errors

/** The log is unreachable or not ready: retrying fixes it. */
export class LogUnavailableError extends InfrastructureError {
  override name = 'LogUnavailableError';
}

/** What retrying cannot fix: the command stops with this one line and exit code 1. */
export class FatalLogError extends InfrastructureError {
  override name = 'FatalLogError';
}

/** The brokers refused the credentials (SASL) or the TLS handshake (certificates). */
export class LogAuthenticationError extends FatalLogError {
  override name = 'LogAuthenticationError';
}

/** The brokers refused an operation to these credentials (ACLs). */
export class LogAuthorizationError extends FatalLogError {
  override name = 'LogAuthorizationError';
}

/** A topic this command needs does not exist, or was deleted, while the brokers answer. */
export class MissingTopicError extends FatalLogError {
  override name = 'MissingTopicError';
  constructor(
    readonly topic: string,
    message: string,
  ) {
    super(message);
  }
}

/** A transactional producer was fenced by a newer owner while this instance still owns its partition. */
export class ProducerFencedError extends FatalLogError {
  override name = 'ProducerFencedError';
}

// ------------------------------------------------------------------ classification

export type LogErrorVerdict = 'retry' | 'fatal' | 'unrelated';

interface ErrorLike {
  name?: string;
  type?: string;
  code?: string | number;
  message?: string;
  cause?: unknown;
}

/** The error and the errors that caused it (kafkajs and this project chain them with `cause`). */
function chain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  let e: unknown = err;
  while (e !== null && typeof e === 'object' && out.length < 16 && !out.includes(e as ErrorLike)) {
    out.push(e as ErrorLike);
    e = (e as ErrorLike).cause;
  }
  return out;
}

/** Node's network errors: the peer is down, unknown or slow. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
]);

/** TLS certificate and handshake failures (Node's codes): another attempt meets the same certificate. */
const TLS_CODE = /^(CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH)/;

/** Kafka protocol errors about the credentials themselves. */
const SASL_TYPES = new Set(['SASL_AUTHENTICATION_FAILED', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_SASL_MECHANISM']);

function isAuthentication(e: ErrorLike): boolean {
  return (
    e.name === 'KafkaJSSASLAuthenticationError' || SASL_TYPES.has(e.type ?? '') || (typeof e.code === 'string' && TLS_CODE.test(e.code))
  );
}

function isAuthorization(e: ErrorLike): boolean {
  return (e.type ?? '').endsWith('_AUTHORIZATION_FAILED');
}

function isFromTheLog(e: ErrorLike): boolean {
  return (
    e instanceof LogUnavailableError || (e.name ?? '').startsWith('KafkaJS') || (typeof e.code === 'string' && NETWORK_CODES.has(e.code))
  );
}

/**
 * May retrying fix this failure? `fatal`: the named conditions above (and any FatalLogError);
 * `retry`: any other failure of the broker, the network or the Kafka client; `unrelated`: not a
 * failure of the log at all (the caller handles it as it always did).
 */
export function classifyLogError(err: unknown): LogErrorVerdict {
  const errors = chain(err);
  // `fatal: true`: the security settings do not fit the cluster (kafka/securityErrors.ts).
  const declaredFatal = (e: ErrorLike) => (e as { fatal?: unknown }).fatal === true;
  if (errors.some((e) => e instanceof FatalLogError || declaredFatal(e) || isAuthentication(e) || isAuthorization(e))) return 'fatal';
  return errors.some(isFromTheLog) ? 'retry' : 'unrelated';
}

/** The producer's epoch is older than the transaction coordinator's: a newer producer, or the broker's timeout, fenced it. */
export function isProducerFenced(err: unknown): boolean {
  return chain(err).some((e) => e.type === 'INVALID_PRODUCER_EPOCH' || e.type === 'PRODUCER_FENCED');
}

/** The failure says a topic or partition is unknown (gone, or not yet known to the broker answering). */
export function mentionsMissingTopic(err: unknown): boolean {
  return chain(err).some(
    (e) => e instanceof MissingTopicError || e.type === 'UNKNOWN_TOPIC_OR_PARTITION' || e.name === 'KafkaJSTopicMetadataNotLoaded',
  );
}

/** A connection could not be made or was lost (as opposed to the broker answering with an error). */
export function isConnectionFailure(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      e instanceof LogUnavailableError ||
      (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) ||
      [
        'KafkaJSConnectionError',
        'KafkaJSConnectionClosedError',
        'KafkaJSRequestTimeoutError',
        'KafkaJSNoBrokerAvailableError',
        'KafkaJSBrokerNotFound',
      ].includes(e.name ?? ''),
  );
}

/** The named fatal error for an authentication or authorization failure (undefined for anything else). */
export function fatalLogError(err: unknown, location: string, action: string): FatalLogError | undefined {
  const errors = chain(err);
  const existing = errors.find((e): e is FatalLogError => e instanceof FatalLogError);
  if (existing) return existing;
  const auth = errors.find(isAuthentication);
  if (auth) {
    return new LogAuthenticationError(
      `Kafka at ${location} refused the credentials (${action}): ${auth.message ?? auth.type ?? auth.code}; check the SASL user and password, or the TLS certificates`,
      { cause: err },
    );
  }
  const denied = errors.find(isAuthorization);
  if (denied) {
    return new LogAuthorizationError(
      `Kafka at ${location} denied ${action} to these credentials (${denied.type}): grant the ACL, or use other credentials`,
      { cause: err },
    );
  }
  return undefined;
}

// ------------------------------------------------------------------ backoff

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  /** Each delay is drawn from [d * (1 - jitter), d * (1 + jitter)] (capped at maxMs): instances do not retry in step. */
  jitter?: number;
  random?: () => number;
}

/** Capped exponential backoff with jitter: 250 ms, 500 ms, 1 s, ... 30 s, 30 s, ... (defaults). */
export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 250;
    this.maxMs = options.maxMs ?? 30_000;
    this.jitter = options.jitter ?? 0.2;
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const jittered = base * (1 - this.jitter + 2 * this.jitter * this.random());
    return Math.round(Math.min(this.maxMs, jittered));
  }

  reset(): void {
    this.attempt = 0;
  }
}

// ------------------------------------------------------------------ reachability

/** How often the probe asks a broker that does not answer (quicker than the operations' backoff: a return is noticed within seconds). */
const PROBE_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 5_000 };

/**
 * Whether the log at one location answers, for this process. Operations report failures that
 * look like an outage (`suspect`); the probe then asks the broker itself, and only a failed probe
 * makes the log unreachable, so that one slow request is not an outage. While unreachable the
 * probe goes on with backoff until the broker answers again.
 */
export class LogHealth {
  private isReachable = true;
  private unreachableSince = 0;
  private probing = false;
  private probe: (() => Promise<void>) | undefined;
  private watched = false;
  private wakeups = new Set<() => void>();
  /** Outages seen by this process (transitions to unreachable). */
  outages = 0;
  /** Why the log was last found unreachable. */
  lastCause: string | null = null;

  constructor(readonly location: string) {}

  get reachable(): boolean {
    return this.isReachable;
  }

  /** The adapter's probe: resolves when a broker answers a request. The first adapter of a location sets it. */
  setProbe(probe: () => Promise<void>): () => void {
    this.probe ??= probe;
    return () => {
      if (this.probe === probe) this.probe = undefined;
    };
  }

  /**
   * A long-running command watches the log: from now on failures are probed, and outages logged
   * and shown. One-shot commands never watch: they fail with one line after bounded retries.
   */
  watch(): void {
    this.watched = true;
  }

  /** Something failed as if the broker were gone: ask it (once; a probe already running covers this). */
  suspect(cause: unknown): void {
    if (!this.watched || this.probing || this.probe === undefined) return;
    this.probing = true;
    void this.probeUntilReachable(cause).finally(() => (this.probing = false));
  }

  private async probeUntilReachable(cause: unknown): Promise<void> {
    const backoff = new Backoff(PROBE_BACKOFF);
    for (;;) {
      const probe = this.probe;
      if (probe === undefined) return;
      try {
        await probe();
        this.markReachable();
        return;
      } catch (err) {
        // A broker that refuses the credentials answers: the operation reports that, not the probe.
        if (classifyLogError(err) === 'fatal') return this.markReachable();
        this.markUnreachable(err ?? cause);
      }
      await sleep(backoff.next(), undefined, { ref: false });
    }
  }

  private markUnreachable(cause: unknown): void {
    this.lastCause = errorMessage(cause);
    if (!this.isReachable) return;
    this.isReachable = false;
    this.unreachableSince = Date.now();
    this.outages++;
    logger.warn(
      { brokers: this.location, cause: this.lastCause, outages: this.outages },
      'Kafka unreachable: waiting for it, retrying with backoff; state is kept',
    );
  }

  private markReachable(): void {
    if (this.isReachable) return;
    this.isReachable = true;
    logger.warn({ brokers: this.location, downMs: Date.now() - this.unreachableSince }, 'Kafka reachable again: going on where it was');
    for (const wake of this.wakeups) wake();
    this.wakeups.clear();
  }

  /** Waits `ms`, or less if the log becomes reachable again meanwhile (or `signal` aborts). */
  async pause(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    const ac = new AbortController();
    const wake = () => ac.abort();
    this.wakeups.add(wake);
    signal?.addEventListener('abort', wake, { once: true });
    try {
      await sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined);
    } finally {
      this.wakeups.delete(wake);
      signal?.removeEventListener('abort', wake);
    }
  }
}

const healthByLocation = new Map<string, LogHealth>();

/** The process-wide health of the log at `location` (every client of one broker list shares it). */
export function logHealth(location: string): LogHealth {
  let health = healthByLocation.get(location);
  if (!health) healthByLocation.set(location, (health = new LogHealth(location)));
  return health;
}

/** `lk_kafka_reachable` and `lk_kafka_outages_total` in a process's Prometheus registry. */
export function registerLogHealthMetrics(registry: Registry, health: LogHealth): void {
  new Gauge({
    name: 'lk_kafka_reachable',
    help: '1 while the Kafka brokers answer, 0 during an outage (always 1 on the embedded log)',
    registers: [registry],
    collect() {
      this.set(health.reachable ? 1 : 0);
    },
  });
  new Gauge({
    name: 'lk_kafka_outages_total',
    help: 'Times the Kafka brokers became unreachable since this process started',
    registers: [registry],
    collect() {
      this.set(health.outages);
    },
  });
}

// ------------------------------------------------------------------ the retry loop

export interface RetryOptions {
  /** What is attempted, for the debug log. */
  what: string;
  health: LogHealth;
  /** True when the caller no longer wants the result (stopping, revoked): the last error is thrown. */
  stopped?: () => boolean;
  /** Ends a wait between attempts early (then `stopped` decides). */
  signal?: AbortSignal;
  /** Runs after a retryable failure, before the wait: throws to stop (see `checkTopics`). */
  check?: (err: unknown) => Promise<void>;
  backoff?: Backoff;
}

/**
 * Runs `attempt` until it succeeds, waiting through outages of any length with `Backoff`; throws
 * at once what retrying cannot fix (fatal) or what is not the log's failure (unrelated).
 */
export async function retryWhileUnavailable<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const backoff = options.backoff ?? new Backoff();
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (classifyLogError(err) !== 'retry' || options.stopped?.()) throw err;
      options.health.suspect(err);
      await options.check?.(err);
      const delay = backoff.next();
      logger.debug({ what: options.what, err: errorMessage(err), retryInMs: delay }, 'log operation failed; retrying');
      await options.health.pause(delay, options.signal);
      if (options.stopped?.()) throw err;
    }
  }
}

/**
 * A check for `retryWhileUnavailable`: a topic that the broker no longer lists (while it answers)
 * is gone for good. Only asked when the failure mentions an unknown topic, or `always`.
 */
export function checkTopics(log: EventLog, topics: readonly string[], always = false): (err: unknown) => Promise<void> {
  return async (err) => {
    if (!always && !mentionsMissingTopic(err)) return;
    const listed = await log.listTopics().catch(() => undefined);
    if (listed === undefined) return;
    const gone = topics.find((t) => !listed.includes(t));
    if (gone !== undefined)
      throw new MissingTopicError(
        gone,
        `topic "${gone}" was deleted from ${log.location} while it was in use; nothing can go on without it`,
      );
  };
}
