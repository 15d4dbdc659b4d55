#!/usr/bin/env node
// Run a real, single-node Apache Kafka broker (KRaft, broker+controller in one
// JVM) without Docker: the official jars come from Maven Central through
// infra/kafka/pom.xml, are cached once, and run with the local Java 17+.
//
// CLI:    node scripts/kafka.mjs start|stop|status|restart|help
//         (npm run kafka -- start)
// Module: import { startKafka, stopKafka, kafkaStatus } from './scripts/kafka.mjs'
//
// Environment (all optional):
//   LK_KAFKA_VERSION   Kafka version to run (default DEFAULT_KAFKA_VERSION below)
//   LK_KAFKA_PORT      PLAINTEXT port (default 9092); the controller uses PORT+1
//   LK_KAFKA_HOME      state dir: data, logs, pid (default <repo>/.lk/kafka)
//   LK_KAFKA_CACHE     jar cache (default ~/.cache/lambda-kappa/kafka-<version>)
//   LK_KAFKA_HEAP      max JVM heap (default 512m)
//   LK_KAFKA_START_TIMEOUT_MS  how long start waits for produce+fetch (default 90000)
//   JAVA_HOME          else `java` on PATH (17+ required); `mvn` only for the first download
//
// Plain Node ESM on purpose (node built-ins + kafkajs): it must run before any
// TypeScript tooling is set up. Types live in scripts/kafka.d.mts.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * kafkajs, loaded on first use: a process that also runs lambda-kappa's log adapter must load its
 * load-time patches (services/log/kafka/kafkajsPatches.ts) before kafkajs, and imports this
 * script early (the test setup, the benchmarks).
 */
async function kafkajsClient() {
  return (await import('kafkajs')).default;
}

/**
 * Kafka version used when LK_KAFKA_VERSION is not set. With kafkajs 2.2.4,
 * scripts/kafkajs-compat-probe.mjs passed all 26 checks on 4.4.0, 4.3.1 and 3.9.2.
 * 4.4.0 needs the kafka-tools-api exclusion in infra/kafka/pom.xml (that one
 * artifact is missing from Maven Central). Keep in sync with <kafka.version> there.
 */
export const DEFAULT_KAFKA_VERSION = '4.4.0';
export const DEFAULT_KAFKA_PORT = 9092;
export const PROBE_TOPIC = '__lk_probe';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POM = join(REPO_ROOT, 'infra', 'kafka', 'pom.xml');
const HELP_SUFFIX = 'or set KAFKA_BROKERS=host:port to use a broker that is already running';

/** Error whose message is meant for people: the CLI prints it as is, without a stack. */
export class KafkaScriptError extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'KafkaScriptError';
    /** Extra lines (e.g. the tail of the broker log); printed after the message. */
    this.details = details;
  }
}

// ---------------------------------------------------------------------------
// configuration

function resolveConfig(opts = {}) {
  const env = opts.env ?? process.env;
  const version = String(opts.version ?? env.LK_KAFKA_VERSION ?? DEFAULT_KAFKA_VERSION).trim();
  if (!/^\d+\.\d+\.\d+([-.][\w.-]+)?$/.test(version)) {
    throw new KafkaScriptError(`invalid Kafka version "${version}" (expected e.g. ${DEFAULT_KAFKA_VERSION})`);
  }
  const port = Number(opts.port ?? env.LK_KAFKA_PORT ?? DEFAULT_KAFKA_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65534) {
    throw new KafkaScriptError(`invalid Kafka port "${opts.port ?? env.LK_KAFKA_PORT}" (LK_KAFKA_PORT)`);
  }
  const home = resolve(opts.home ?? env.LK_KAFKA_HOME ?? join(REPO_ROOT, '.lk', 'kafka'));
  const cache = resolve(opts.cache ?? env.LK_KAFKA_CACHE ?? join(homedir(), '.cache', 'lambda-kappa', `kafka-${version}`));
  const timeoutMs = Number(opts.timeoutMs ?? env.LK_KAFKA_START_TIMEOUT_MS ?? 90_000);
  const heap = String(opts.heap ?? env.LK_KAFKA_HEAP ?? '512m');
  const quiet = Boolean(opts.quiet);
  const listeners = (opts.listeners ?? []).map((l) => {
    if (!/^[A-Z][A-Z0-9_]*$/.test(l.name ?? '') || ['PLAINTEXT', 'CONTROLLER'].includes(l.name)) {
      throw new KafkaScriptError(`invalid extra listener name "${l.name}" (upper case, not PLAINTEXT or CONTROLLER)`);
    }
    if (!['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'].includes(l.protocol)) {
      throw new KafkaScriptError(`listener ${l.name}: invalid security protocol "${l.protocol}"`);
    }
    if (!Number.isInteger(l.port) || l.port < 1 || l.port > 65535)
      throw new KafkaScriptError(`listener ${l.name}: invalid port "${l.port}"`);
    return { name: l.name, port: l.port, protocol: l.protocol };
  });
  const log = opts.log ?? ((msg) => quiet || process.stderr.write(`[kafka] ${msg}\n`));
  return {
    env,
    version,
    major: Number(version.split('.')[0]),
    port,
    controllerPort: port + 1,
    host: '127.0.0.1',
    brokers: `127.0.0.1:${port}`,
    home,
    cache,
    libs: join(cache, 'libs'),
    dataDir: join(home, 'data'),
    logsDir: join(home, 'logs'),
    pidFile: join(home, 'kafka.pid'),
    stateFile: join(home, 'broker.json'),
    lockFile: join(home, '.start.lock'),
    propsFile: join(home, 'server.properties'),
    log4jFile: join(home, 'log4j2.properties'),
    serverLog: join(home, 'logs', 'server.log'),
    outLog: join(home, 'logs', 'kafka.out'),
    timeoutMs: Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 90_000,
    heap,
    log,
    listeners,
    extraProperties: Object.entries(opts.serverProperties ?? {}),
    scram: [...(opts.scram ?? [])],
  };
}

// ---------------------------------------------------------------------------
// small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isAlive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** True if pid is (very likely) a Kafka broker JVM, so a recycled pid is never signalled. */
function isKafkaProcess(pid) {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes('kafka.Kafka')) return false;
    // a zombie (exited, not yet reaped) still has a /proc entry
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return !existsSync('/proc/self'); // no procfs (macOS): trust kill(0)
  }
}

function portOpen(host, port, timeoutMs = 1000) {
  return new Promise((res) => {
    const sock = connect({ host, port });
    const done = (ok) => {
      sock.destroy();
      res(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function readPid(cfg) {
  try {
    const pid = Number(readFileSync(cfg.pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function fileSize(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Last `lines` lines of `file`, only from byte `from` on (what this start wrote); '' if none. */
function tailFile(file, lines = 40, from = 0, maxBytes = 64 * 1024) {
  try {
    const size = statSync(file).size;
    const start = Math.max(size < from ? 0 : from, size - maxBytes); // size < from: log rotated
    const len = size - start;
    if (len <= 0) return '';
    const buf = Buffer.alloc(len);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, len, start);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8').split('\n').filter(Boolean).slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function brokerLogTail(cfg, since = {}, lines = 30) {
  const parts = [];
  const server = tailFile(cfg.serverLog, lines, since.server ?? 0);
  if (server) parts.push(`--- tail of ${cfg.serverLog} ---\n${server}`);
  const out = tailFile(cfg.outLog, 15, since.out ?? 0);
  if (out) parts.push(`--- tail of ${cfg.outLog} ---\n${out}`);
  return parts.join('\n') || `(the broker wrote nothing to ${cfg.logsDir})`;
}

const secs = (ms) => `${(ms / 1000).toFixed(1)}s`;

// ---------------------------------------------------------------------------
// prerequisites

function which(cmd, env) {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Finds java >= 17 (JAVA_HOME first, then PATH) or throws a one-line install hint. */
export function findJava(opts = {}) {
  const env = opts.env ?? process.env;
  const hint = `install a Java 17+ runtime (e.g. \`apt-get install openjdk-17-jre-headless\`, or set JAVA_HOME), ${HELP_SUFFIX}`;
  const fromHome = env.JAVA_HOME ? join(env.JAVA_HOME, 'bin', 'java') : undefined;
  if (fromHome && !existsSync(fromHome)) {
    // mvn would refuse to run as well, so do not silently fall back to PATH
    throw new KafkaScriptError(`JAVA_HOME=${env.JAVA_HOME} has no bin/java: point JAVA_HOME at a Java 17+ install or unset it`);
  }
  const java = fromHome ?? which('java', env);
  if (!java) throw new KafkaScriptError(`Java not found (no JAVA_HOME, no \`java\` on PATH): ${hint}`);
  const r = spawnSync(java, ['-version'], { encoding: 'utf8', timeout: 30_000 });
  const text = `${r.stderr ?? ''}${r.stdout ?? ''}`;
  const m = /version "(\d+)(?:\.(\d+))?/.exec(text);
  if (r.status !== 0 || !m) throw new KafkaScriptError(`\`${java} -version\` failed: ${hint}`);
  const major = m[1] === '1' ? Number(m[2]) : Number(m[1]);
  if (major < 17) throw new KafkaScriptError(`Java ${major} found at ${java}, Kafka needs 17+: ${hint}`);
  return { java, major };
}

function findMaven(env) {
  const mvn = which('mvn', env);
  if (!mvn) {
    throw new KafkaScriptError(
      `Maven not found (\`mvn\` on PATH is needed once, to fetch the Kafka jars from Maven Central): install Maven 3.6+ (e.g. \`apt-get install maven\`), ${HELP_SUFFIX}`,
    );
  }
  return mvn;
}

// ---------------------------------------------------------------------------
// jars

function libsReady(cfg) {
  if (!existsSync(join(cfg.libs, '.complete'))) return false;
  try {
    const jars = readdirSync(cfg.libs);
    // The broker and Kafka's command-line tools (a cache from before the tools were added lacks them).
    return ['kafka_2.13-', 'kafka-tools-'].every((prefix) => jars.some((f) => f.startsWith(prefix) && f.endsWith('.jar')));
  } catch {
    return false;
  }
}

/** Copies kafka_2.13:<version> and its runtime dependencies into <cache>/libs once. */
export async function ensureKafkaJars(opts = {}) {
  const cfg = opts.__cfg ?? resolveConfig(opts);
  if (libsReady(cfg)) return { libs: cfg.libs, resolved: false, ms: 0 };
  const mvn = findMaven(cfg.env);
  mkdirSync(cfg.cache, { recursive: true });
  const tmp = join(cfg.cache, `libs.tmp-${process.pid}-${Date.now()}`);
  cfg.log(`resolving Kafka ${cfg.version} jars from Maven Central into ${cfg.libs} (one-time; needs network)...`);
  const t0 = Date.now();
  const args = [
    '-q',
    '-B',
    '-f',
    POM,
    `-Dkafka.version=${cfg.version}`,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${tmp}`,
  ];
  const code = await new Promise((res) => {
    const out = [];
    const child = spawn(mvn, args, { cwd: REPO_ROOT, env: cfg.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => out.push(d));
    child.on('error', (e) => res({ status: -1, text: String(e) }));
    child.on('close', (status) => res({ status, text: Buffer.concat(out).toString('utf8') }));
  });
  if (code.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    const lines = code.text
      // Maven colours its output; strip the ANSI escapes (ESC is a control character on purpose).
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;]*m/g, '')
      .split('\n')
      .filter((l) => l.trim());
    const firstErr = lines.find((l) => /ERROR/.test(l)) ?? lines[0] ?? `exit code ${code.status}`;
    throw new KafkaScriptError(
      `could not resolve org.apache.kafka:kafka_2.13:${cfg.version} with Maven (${firstErr.replace(/\s+/g, ' ').trim().slice(0, 300)})`,
      lines.slice(-20).join('\n'),
    );
  }
  const jars = readdirSync(tmp).filter((f) => f.endsWith('.jar'));
  // An older, incomplete cache is replaced.
  if (existsSync(cfg.libs) && !libsReady(cfg)) rmSync(cfg.libs, { recursive: true, force: true });
  writeFileSync(join(tmp, '.complete'), `${JSON.stringify({ version: cfg.version, jars: jars.length, at: new Date().toISOString() })}\n`);
  try {
    renameSync(tmp, cfg.libs);
  } catch (e) {
    // someone else finished first: keep theirs
    rmSync(tmp, { recursive: true, force: true });
    if (!libsReady(cfg)) throw new KafkaScriptError(`could not move jars into ${cfg.libs}: ${e.message}`);
  }
  const ms = Date.now() - t0;
  cfg.log(`resolved ${jars.length} jars in ${secs(ms)}`);
  return { libs: cfg.libs, resolved: true, ms };
}

// ---------------------------------------------------------------------------
// configuration files

function serverProperties(cfg) {
  const p = cfg.port;
  const c = cfg.controllerPort;
  const lines = [
    `# Generated by scripts/kafka.mjs for Kafka ${cfg.version}: rewritten on every start, do not edit.`,
    '# Single combined broker+controller KRaft node for development and tests.',
    'process.roles=broker,controller',
    'node.id=1',
    `listeners=${[`PLAINTEXT://127.0.0.1:${p}`, `CONTROLLER://127.0.0.1:${c}`, ...cfg.listeners.map((l) => `${l.name}://127.0.0.1:${l.port}`)].join(',')}`,
    `advertised.listeners=${[`PLAINTEXT://127.0.0.1:${p}`, ...cfg.listeners.map((l) => `${l.name}://127.0.0.1:${l.port}`)].join(',')}`,
    `listener.security.protocol.map=${['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT', ...cfg.listeners.map((l) => `${l.name}:${l.protocol}`)].join(',')}`,
    'inter.broker.listener.name=PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    cfg.major >= 4
      ? `controller.quorum.bootstrap.servers=127.0.0.1:${c}` // dynamic quorum (KIP-853); formatted with --standalone
      : `controller.quorum.voters=1@127.0.0.1:${c}`,
    `log.dirs=${cfg.dataDir}`,
    '',
    '# one node: every internal topic must have replication factor 1, or groups/transactions hang',
    'num.partitions=1',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=10',
    ...(cfg.major >= 4 ? ['share.coordinator.state.topic.replication.factor=1', 'share.coordinator.state.topic.min.isr=1'] : []),
    'group.initial.rebalance.delay.ms=0',
    '# typos in topic names fail loudly instead of creating topics',
    'auto.create.topics.enable=false',
    'delete.topic.enable=true',
    '',
    '# small footprint for a 2-core dev box / CI',
    'num.network.threads=2',
    'num.io.threads=4',
    'background.threads=4',
    'num.recovery.threads.per.data.dir=1',
    'log.segment.bytes=16777216',
    'log.index.size.max.bytes=1048576',
    'log.retention.check.interval.ms=60000',
    'log.cleaner.threads=1',
    'log.cleaner.dedupe.buffer.size=16777216',
    'log.cleaner.backoff.ms=5000',
    '',
    ...(cfg.extraProperties.length > 0 ? ["# the caller's own settings (startKafka serverProperties): the last value of a key wins"] : []),
    ...cfg.extraProperties.map(([k, v]) => `${k}=${escapeProperty(v)}`),
    '',
  ];
  return lines.join('\n');
}

/** A value written into a .properties file: backslashes and line breaks escaped. */
function escapeProperty(value) {
  return String(value).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

function log4jProperties(cfg) {
  return [
    '# Generated by scripts/kafka.mjs: broker logs go to a size-capped file.',
    'status = warn',
    '# keep logging while the broker runs its own shutdown hook',
    'shutdownHook = disable',
    'name = lk-kafka',
    'appender.file.type = RollingFile',
    'appender.file.name = file',
    `appender.file.fileName = ${cfg.serverLog}`,
    `appender.file.filePattern = ${cfg.serverLog}.%i`,
    'appender.file.layout.type = PatternLayout',
    'appender.file.layout.pattern = [%d] %p %m (%c)%n',
    'appender.file.policies.type = Policies',
    'appender.file.policies.size.type = SizeBasedTriggeringPolicy',
    'appender.file.policies.size.size = 10MB',
    'appender.file.strategy.type = DefaultRolloverStrategy',
    'appender.file.strategy.max = 3',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.file.ref = file',
    'logger.statechange.name = state.change.logger',
    'logger.statechange.level = WARN',
    'logger.request.name = kafka.request.logger',
    'logger.request.level = WARN',
    'logger.authorizer.name = kafka.authorizer.logger',
    'logger.authorizer.level = WARN',
    '',
  ].join('\n');
}

function jvmArgs(cfg) {
  return [
    `-Xmx${cfg.heap}`,
    '-Xms128m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.awt.headless=true',
    `-Dkafka.logs.dir=${cfg.logsDir}`,
    `-Dlog4j2.configurationFile=${cfg.log4jFile}`,
    '-cp',
    `${cfg.libs}/*`,
  ];
}

/** Kafka's Uuid text form: 16 random bytes, base64url, no padding, never starting with '-'. */
function randomClusterId() {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function ensureFormatted(cfg, java) {
  const meta = join(cfg.dataDir, 'meta.properties');
  if (existsSync(meta)) {
    const formattedBy = readJson(cfg.stateFile)?.formattedBy;
    if (formattedBy && formattedBy !== cfg.version) {
      cfg.log(
        `note: ${cfg.dataDir} was formatted by Kafka ${formattedBy}, now starting ${cfg.version}; if it fails, stop and delete ${cfg.home}`,
      );
    }
    return { formatted: false };
  }
  const clusterId = randomClusterId();
  const args = [
    ...jvmArgs(cfg).map((a) => (a.startsWith('-Xmx') ? '-Xmx256m' : a)),
    'kafka.tools.StorageTool',
    'format',
    '-t',
    clusterId,
    '-c',
    cfg.propsFile,
    ...(cfg.major >= 4 ? ['--standalone'] : []),
    // SCRAM credentials exist from the first start in KRaft only when written at format time.
    ...cfg.scram.flatMap((s) => ['--add-scram', s]),
  ];
  cfg.log(`formatting KRaft storage in ${cfg.dataDir} (cluster id ${clusterId})`);
  const r = spawnSync(java, args, { cwd: cfg.home, env: cfg.env, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !existsSync(meta)) {
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    const first = text.split('\n').find((l) => l.trim()) ?? `exit code ${r.status}`;
    throw new KafkaScriptError(`kafka.tools.StorageTool format failed: ${first.trim()}`, text.split('\n').slice(-20).join('\n'));
  }
  return { formatted: true, clusterId };
}

// ---------------------------------------------------------------------------
// readiness probe

/**
 * Proves that the broker at `brokers` really works end to end: creates the
 * probe topic if missing, produces one message (acks=all) and consumes it back
 * through a consumer group. Throws on failure.
 */
export async function probeKafka(brokers, { attemptTimeoutMs = 20_000 } = {}) {
  const { Kafka, logLevel, Partitioners } = await kafkajsClient();
  const kafka = new Kafka({
    clientId: 'lk-kafka-probe',
    brokers: [brokers],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    requestTimeout: 15_000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const admin = kafka.admin();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  const consumer = kafka.consumer({
    groupId: PROBE_TOPIC,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 250,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  let timer;
  try {
    const work = (async () => {
      await admin.connect();
      const topics = await admin.listTopics();
      if (!topics.includes(PROBE_TOPIC)) {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic: PROBE_TOPIC,
              numPartitions: 1,
              replicationFactor: 1,
              configEntries: [{ name: 'retention.ms', value: String(24 * 3600 * 1000) }],
            },
          ],
        });
      }
      await producer.connect();
      const nonce = randomUUID();
      const [res] = await producer.send({ topic: PROBE_TOPIC, acks: -1, messages: [{ key: 'probe', value: nonce }] });
      const offset = res.baseOffset ?? res.offset;
      let found;
      const seen = new Promise((r) => (found = r));
      await consumer.connect();
      await consumer.subscribe({ topics: [PROBE_TOPIC], fromBeginning: false });
      await consumer.run({
        autoCommitInterval: 100,
        eachMessage: async ({ message }) => {
          if (message.value?.toString() === nonce) found();
        },
      });
      consumer.seek({ topic: PROBE_TOPIC, partition: 0, offset: String(offset) });
      await seen;
    })();
    const timeout = new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`probe did not complete within ${secs(attemptTimeoutMs)}`)), attemptTimeoutMs);
    });
    await Promise.race([work, timeout]);
    work.catch(() => {});
  } finally {
    clearTimeout(timer);
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()]);
  }
}

// ---------------------------------------------------------------------------
// locking: start and stop of one LK_KAFKA_HOME are serialized across processes
// (lock file) and within this process (promise chain), e.g. two test runs at once

const inProcessLocks = new Map();

function withStartLock(cfg, deadline, fn) {
  const prev = inProcessLocks.get(cfg.home) ?? Promise.resolve();
  const next = prev.catch(() => {}).then(() => withFileLock(cfg, deadline, fn));
  const tail = next.catch(() => {});
  inProcessLocks.set(cfg.home, tail);
  tail.then(() => {
    if (inProcessLocks.get(cfg.home) === tail) inProcessLocks.delete(cfg.home);
  });
  return next;
}

async function withFileLock(cfg, deadline, fn) {
  mkdirSync(cfg.home, { recursive: true });
  for (;;) {
    try {
      const fd = openSync(cfg.lockFile, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const owner = Number(readFileSync(cfg.lockFile, 'utf8').trim() || 0);
      if (!owner || !isAlive(owner)) {
        rmSync(cfg.lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new KafkaScriptError(`another start/stop (pid ${owner}) holds ${cfg.lockFile} for too long`);
      }
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(cfg.lockFile, { force: true });
  }
}

// ---------------------------------------------------------------------------
// public API

/** Status of the broker managed in LK_KAFKA_HOME. Never throws for "not running". */
export async function kafkaStatus(opts = {}) {
  const cfg = resolveConfig(opts);
  const state = readJson(cfg.stateFile) ?? {};
  const pid = readPid(cfg);
  const port = state.port ?? cfg.port;
  const base = {
    home: cfg.home,
    version: state.version ?? cfg.version,
    port,
    brokers: `127.0.0.1:${port}`,
    logFile: cfg.serverLog,
  };
  if (!pid || !isKafkaProcess(pid)) {
    return { ...base, running: false, pid: undefined, stalePid: pid && !isAlive(pid) ? pid : undefined };
  }
  const answering = await portOpen('127.0.0.1', port);
  return {
    ...base,
    running: answering,
    starting: !answering,
    pid,
    startedAt: state.startedAt,
    startupMs: state.startupMs,
    uptimeMs: state.startedAt ? Date.now() - Date.parse(state.startedAt) : undefined,
  };
}

/**
 * Starts the broker (no-op if the one in LK_KAFKA_HOME is already running) and
 * resolves once it accepts produce and fetch.
 */
export async function startKafka(opts = {}) {
  const cfg = resolveConfig(opts);
  const deadline = Date.now() + cfg.timeoutMs + 10 * 60_000; // + time for a first jar download
  return withStartLock(cfg, deadline, async () => {
    const current = await kafkaStatus(opts);
    if (current.running) {
      if (current.port !== cfg.port) {
        cfg.log(`note: the broker in ${cfg.home} listens on ${current.port}, not ${cfg.port}`);
      }
      cfg.log(`Kafka ${current.version} already running at ${current.brokers} (pid ${current.pid})`);
      return { ...current, cache: cfg.cache, alreadyRunning: true };
    }
    if (current.pid) {
      // JVM alive but not (yet) listening: an earlier start still booting, or a hung broker
      throw new KafkaScriptError(
        `a broker process (pid ${current.pid}) exists in ${cfg.home} but does not answer on ${current.brokers}; run \`npm run kafka -- stop\` first`,
      );
    }
    rmSync(cfg.pidFile, { force: true });
    if (opts.fresh && existsSync(cfg.dataDir)) {
      cfg.log(`wiping ${cfg.dataDir} (fresh start)`);
      rmSync(cfg.dataDir, { recursive: true, force: true });
    }

    const { java } = findJava(opts);
    for (const p of [cfg.port, cfg.controllerPort, ...cfg.listeners.map((l) => l.port)]) {
      if (await portOpen('127.0.0.1', p, 500)) {
        throw new KafkaScriptError(
          `port ${p} on 127.0.0.1 is already in use by another process: choose other ports with LK_KAFKA_PORT (the controller uses PORT+1), ${HELP_SUFFIX}`,
        );
      }
    }
    const jars = await ensureKafkaJars({ ...opts, __cfg: cfg });

    mkdirSync(cfg.dataDir, { recursive: true });
    mkdirSync(cfg.logsDir, { recursive: true });
    writeFileSync(cfg.propsFile, serverProperties(cfg));
    writeFileSync(cfg.log4jFile, log4jProperties(cfg));
    const fmt = ensureFormatted(cfg, java);

    cfg.log(`starting Kafka ${cfg.version} on ${cfg.brokers} (controller :${cfg.controllerPort}, heap ${cfg.heap}, logs ${cfg.serverLog})`);
    const t0 = Date.now();
    const since = { server: fileSize(cfg.serverLog), out: fileSize(cfg.outLog) };
    const outFd = openSync(cfg.outLog, 'a');
    writeFileSync(outFd, `\n=== ${new Date().toISOString()} starting Kafka ${cfg.version} ===\n`);
    let child;
    try {
      child = spawn(java, [...jvmArgs(cfg), 'kafka.Kafka', cfg.propsFile], {
        cwd: cfg.home,
        env: cfg.env,
        detached: true,
        stdio: ['ignore', outFd, outFd],
      });
    } finally {
      closeSync(outFd);
    }
    let exited;
    child.on('exit', (code, signal) => (exited = { code, signal }));
    const spawnError = await new Promise((r) => {
      child.once('error', r);
      child.once('spawn', () => r(undefined));
    });
    if (spawnError) throw new KafkaScriptError(`could not run ${java}: ${spawnError.message}`);
    child.unref();
    const pid = child.pid;
    writeFileSync(cfg.pidFile, `${pid}\n`);
    const prevState = readJson(cfg.stateFile) ?? {};
    const state = {
      pid,
      port: cfg.port,
      version: cfg.version,
      brokers: cfg.brokers,
      startedAt: new Date(t0).toISOString(),
      formattedBy: fmt.formatted ? cfg.version : (prevState.formattedBy ?? cfg.version),
      cache: cfg.cache,
    };
    writeFileSync(cfg.stateFile, `${JSON.stringify(state, null, 2)}\n`);

    const fail = async (why) => {
      if (!exited && isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(cfg.pidFile, { force: true });
      throw new KafkaScriptError(why, brokerLogTail(cfg, since));
    };
    const onSignal = (sig) => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      rmSync(cfg.pidFile, { force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    if (opts.handleSignals) {
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    }

    try {
      const readyBy = t0 + cfg.timeoutMs;
      let lastError = 'port not open yet';
      // 1. wait for the listener
      while (!(await portOpen('127.0.0.1', cfg.port, 500))) {
        if (exited) return await fail(`Kafka exited during startup (code ${exited.code ?? exited.signal})`);
        if (Date.now() > readyBy) return await fail(`Kafka did not open ${cfg.brokers} within ${secs(cfg.timeoutMs)}`);
        await sleep(250);
      }
      // 2. wait until produce + fetch work
      for (;;) {
        if (exited) return await fail(`Kafka exited during startup (code ${exited.code ?? exited.signal})`);
        const left = readyBy - Date.now();
        if (left <= 0) {
          return await fail(`Kafka at ${cfg.brokers} did not accept produce+fetch within ${secs(cfg.timeoutMs)}: ${lastError}`);
        }
        try {
          await probeKafka(cfg.brokers, { attemptTimeoutMs: Math.max(1000, Math.min(left, 30_000)) });
          break;
        } catch (e) {
          lastError = e?.message ?? String(e);
          await sleep(500);
        }
      }
    } finally {
      if (opts.handleSignals) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
    const startupMs = Date.now() - t0;
    writeFileSync(cfg.stateFile, `${JSON.stringify({ ...state, startupMs }, null, 2)}\n`);
    cfg.log(`Kafka ${cfg.version} ready at ${cfg.brokers} (pid ${pid}) in ${secs(startupMs)}`);
    return {
      running: true,
      alreadyRunning: false,
      brokers: cfg.brokers,
      pid,
      port: cfg.port,
      version: cfg.version,
      home: cfg.home,
      cache: cfg.cache,
      logFile: cfg.serverLog,
      startupMs,
      jarsResolvedMs: jars.resolved ? jars.ms : undefined,
      formatted: fmt.formatted,
    };
  });
}

/** Stops the broker of LK_KAFKA_HOME: SIGTERM, up to `graceMs` (30 s) to exit, then SIGKILL. */
export async function stopKafka(opts = {}) {
  const cfg = resolveConfig(opts);
  return withStartLock(cfg, Date.now() + cfg.timeoutMs + 60_000, async () => {
    if (opts.onlyIf && !(await opts.onlyIf())) {
      const pid = readPid(cfg);
      return { stopped: false, pid: pid && isKafkaProcess(pid) ? pid : undefined, skipped: true };
    }
    return stopUnlocked(cfg, opts);
  });
}

async function stopUnlocked(cfg, opts) {
  const graceMs = Number(opts.graceMs ?? 30_000);
  const pid = readPid(cfg);
  if (!pid || !isKafkaProcess(pid)) {
    rmSync(cfg.pidFile, { force: true });
    cfg.log(`Kafka not running (${cfg.home})`);
    return { stopped: false, pid: undefined };
  }
  cfg.log(`stopping Kafka (pid ${pid})...`);
  const t0 = Date.now();
  let killed = false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  while (isKafkaProcess(pid) && Date.now() - t0 < graceMs) await sleep(200);
  if (isKafkaProcess(pid)) {
    cfg.log(`Kafka did not exit within ${secs(graceMs)}: SIGKILL`);
    killed = true;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    const t1 = Date.now();
    while (isKafkaProcess(pid) && Date.now() - t1 < 10_000) await sleep(100);
    if (isKafkaProcess(pid)) throw new KafkaScriptError(`could not stop Kafka (pid ${pid})`);
  }
  // the listener can linger for a moment after the JVM is gone
  const state = readJson(cfg.stateFile) ?? {};
  const t2 = Date.now();
  while ((await portOpen('127.0.0.1', state.port ?? cfg.port, 200)) && Date.now() - t2 < 5000) await sleep(100);
  rmSync(cfg.pidFile, { force: true });
  const ms = Date.now() - t0;
  cfg.log(`Kafka stopped (pid ${pid}) in ${secs(ms)}${killed ? ' (killed)' : ''}`);
  return { stopped: true, pid, killed, ms };
}

// ---------------------------------------------------------------------------
// CLI

const USAGE = `usage: node scripts/kafka.mjs <start|stop|status|restart|resolve>   (npm run kafka -- start)

  start    start a single-node KRaft broker (no-op if already running); waits
           until it accepts produce+fetch and prints its address
  stop     SIGTERM, wait up to 30s, then SIGKILL
  status   print whether it runs (exit 0 if running, 1 if not)
  restart  stop, then start
  resolve  only resolve the broker jars into the cache (Maven Central), then exit

env: LK_KAFKA_VERSION (default ${DEFAULT_KAFKA_VERSION}), LK_KAFKA_PORT (default ${DEFAULT_KAFKA_PORT}; controller PORT+1),
     LK_KAFKA_HOME (default .lk/kafka), LK_KAFKA_CACHE (default ~/.cache/lambda-kappa/kafka-<version>),
     LK_KAFKA_HEAP (default 512m), LK_KAFKA_START_TIMEOUT_MS (default 90000), JAVA_HOME`;

async function main(argv) {
  const cmd = argv[0];
  switch (cmd) {
    case 'start': {
      const r = await startKafka({ handleSignals: true });
      process.stdout.write(`${r.brokers}\n`);
      return 0;
    }
    case 'resolve': {
      const r = await ensureKafkaJars();
      process.stdout.write(`${r.libs}\n`);
      return 0;
    }
    case 'stop':
      await stopKafka();
      return 0;
    case 'restart':
      await stopKafka();
      await startKafka({ handleSignals: true }).then((r) => process.stdout.write(`${r.brokers}\n`));
      return 0;
    case 'status': {
      const s = await kafkaStatus();
      if (s.running) {
        const up = s.uptimeMs !== undefined ? `, up ${secs(s.uptimeMs)}` : '';
        const st = s.startupMs !== undefined ? `, started in ${secs(s.startupMs)}` : '';
        process.stdout.write(`running: Kafka ${s.version} at ${s.brokers} (pid ${s.pid}${up}${st}; home ${s.home})\n`);
        return 0;
      }
      if (s.starting) {
        process.stdout.write(`starting: Kafka ${s.version} pid ${s.pid} is not answering on ${s.brokers} yet (home ${s.home})\n`);
        return 1;
      }
      process.stdout.write(`not running: Kafka ${s.version} at ${s.brokers} (home ${s.home})\n`);
      return 1;
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`kafka: unknown command "${cmd ?? ''}"\n${USAGE}\n`);
      return 1;
  }
}

function isMain() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      const msg = err instanceof KafkaScriptError ? err.message : `unexpected error: ${err?.message ?? err}`;
      process.stderr.write(`kafka: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
      if (err instanceof KafkaScriptError && err.details) process.stderr.write(`${err.details}\n`);
      process.exit(1);
    },
  );
}
