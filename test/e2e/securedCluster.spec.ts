/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers and status documents are untyped JSON here. */
/**
 * A secured cluster, end to end, on a broker of the test's own (test/securedKafka.ts): a SASL_SSL
 * listener with SCRAM-SHA-512 (the user written at storage format time), a mutual-TLS listener
 * and a listener whose certificate names another host, all on certificates the test made.
 *
 * - The whole path over SASL_SSL with one client properties file (`--kafka-config`, brokers from
 *   its bootstrap.servers): `lk topics create`, `lk produce` with bad lines (dead letters),
 *   `lk speed`, `lk batch run`, `lk serve`; every window over GraphQL equals an oracle computed
 *   here from the same events, and serving counts the dead letters. Kafka's own console consumer,
 *   given the same file, reads the events `lk` wrote.
 * - Mutual TLS with a PKCS12 trust store (keytool) and key store (openssl), and with a PEM key
 *   store whose key is encrypted: lk writes, Kafka's console consumer reads with the same files.
 * - Mistakes in the file are configuration errors (exit code 2, one line, no connection).
 * - Each misconfiguration fails with exit code 1 and one line naming cause and fix, the command
 *   bounded by a 60 s deadline (it is killed, and the test fails, past it): a wrong password (in
 *   `lk speed`, a long-running command), an untrusted certificate, a host-name mismatch (and the
 *   check switched off with ssl.endpoint.identification.algorithm=), a plaintext client on the
 *   TLS listener (no --kafka-config at all: the issue's "Closed connection"), a TLS client on the
 *   plaintext listener, no client certificate and a foreign one on the mTLS listener, TLS without
 *   SASL on the SASL listener.
 * - No output of any of it holds a password: every command's stdout and stderr, --help, the speed
 *   layer's /status and /metrics, serving's /metrics and GraphQL answers are grepped for each.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDeadLetter } from '../../services/ingest/deadLetter.ts';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { loadKafkaClientConfig } from '../../services/log/kafka/kafkaClientConfig.ts';
import { KafkaLog } from '../../services/log/kafka/kafkaLog.ts';
import { currentBatchRun } from '../sharedState.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { LK_BIN } from '../cli.ts';
import { eventually, freePort, tempDir, uniqueName } from '../helpers.ts';
import { kafkaTool } from '../kafkaTools.ts';
import { readTopic } from '../logReader.ts';
import { startSecuredKafka, type SecuredKafka } from '../securedKafka.ts';
import { Pipeline, killAll, testVersion, type LkProcess } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1717);
const MINUTE = 60_000;
const HOUR = 3_600_000;
/** The issue's bound for a failure: exit within 60 s, never a hang. */
const FAILURE_DEADLINE_MS = 60_000;

const METRICS = `version: 1
metrics:
  - name: spend
    key: campaign_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 1d
`;

/** Everything any command or endpoint printed: grepped for the secrets at the end. */
const outputs: { what: string; text: string }[] = [];
const seen = (what: string, text: string): string => {
  outputs.push({ what, text });
  return text;
};

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `lk args`, killed past `deadlineMs` (then the result says so); records its output. */
function lk(
  args: string[],
  env: Record<string, string> = {},
  deadlineMs = FAILURE_DEADLINE_MS,
): Promise<Run & { killed: boolean; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [LK_BIN, ...args], {
      env: { ...process.env, KAFKA_BROKERS: '', LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, deadlineMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      seen(`lk ${args.join(' ')}`, stdout + stderr);
      resolve({ code, stdout, stderr, killed, ms: Date.now() - started });
    });
  });
}

interface Ev {
  id: string;
  ts: number;
  campaign_id: string;
  cost?: number;
}

/** The oracle: per campaign and window start, count and sum of cost, each event id once. */
function oracle(events: Ev[], size: number): Map<string, Map<number, { count: number; sum: number | null }>> {
  const out = new Map<string, Map<number, { count: number; sum: number | null }>>();
  const ids = new Set<string>();
  for (const e of events) {
    if (ids.has(e.id)) continue;
    ids.add(e.id);
    const start = Math.floor(e.ts / size) * size;
    const byWindow = out.get(e.campaign_id) ?? out.set(e.campaign_id, new Map()).get(e.campaign_id)!;
    const w = byWindow.get(start) ?? byWindow.set(start, { count: 0, sum: null }).get(start)!;
    w.count++;
    if (e.cost !== undefined) w.sum = (w.sum ?? 0) + e.cost;
  }
  return out;
}

async function consoleConsume(brokers: string, configFile: string, topic: string, count: number): Promise<string[]> {
  const r = await kafkaTool('org.apache.kafka.tools.consumer.ConsoleConsumer', [
    '--bootstrap-server',
    brokers,
    '--command-config',
    configFile,
    '--topic',
    topic,
    '--from-beginning',
    '--max-messages',
    String(count),
    '--timeout-ms',
    '30000',
  ]);
  seen(`console consumer ${topic}`, r.stdout + r.stderr);
  return r.stdout.split('\n').filter((l) => l.startsWith('{'));
}

describe('a secured cluster: SASL_SSL, mutual TLS, and every misconfiguration named', () => {
  const dir = tempDir('lk-secured-');
  let kafka: SecuredKafka;
  let saslFile: string;
  let log: EventLog;

  beforeAll(async () => {
    kafka = await startSecuredKafka(dir.path);
    saslFile = kafka.writeProperties(
      'client.properties',
      kafka.saslSslProperties({ 'bootstrap.servers': kafka.saslSsl, 'client.id': 'lk-secured-test', 'linger.ms': '5' }),
    );
    const config = loadKafkaClientConfig(saslFile);
    log = new KafkaLog({ brokers: [kafka.saslSsl], security: config.security, clientId: 'lk-secured-reader' });
  });

  afterAll(async () => {
    killAll();
    await log?.close();
    await kafka?.stop();
    dir.remove();
  });

  it('runs produce (with dead letters), speed, batch and serve over SASL_SSL; GraphQL equals the oracle; Kafka reads it too', async () => {
    const topic = uniqueName('secured');
    // No KAFKA_BROKERS (the suite's broker): the brokers come from the file's bootstrap.servers.
    const env = { LK_KAFKA_CONFIG: saslFile, KAFKA_BROKERS: '' };
    const p = new Pipeline(dir.path, join(dir.path, 'metrics.yaml'), topic, testVersion('sec'), env, {
      brokers: [kafka.saslSsl],
      security: loadKafkaClientConfig(saslFile).security,
    });
    writeFileSync(p.metricsFile, METRICS);
    const start = Math.floor((Date.now() - 90 * MINUTE) / HOUR) * HOUR;
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 800,
        startTime: start,
        eventsPerSecond: 0.5,
        duplicateRate: 0.1,
        lateRate: 0,
        campaigns: 6,
      }),
    ];
    const bad = ['{"id":"broken', '{"type":"click","ts":"2026-01-01T00:00:00Z"}', 'not json at all'];
    writeFileSync(join(dir.path, 'events.jsonl'), [...lines.slice(0, 300), ...bad, ...lines.slice(300)].join('\n') + '\n');
    const events: Ev[] = lines.map((l) => {
      const o = JSON.parse(l);
      return { ...o, ts: Date.parse(o.ts) };
    });

    // Brokers from bootstrap.servers: neither --brokers nor KAFKA_BROKERS is given.
    const created = await lk(['topics', 'create', '--topic', topic, '--partitions', '3', ...p.common()], env);
    expect(created.stderr).toMatch(/^(\{.*"msg":"Kafka client config .*: not used by lk: linger\.ms"\}\n)?$/);
    expect(created.stdout).toContain(`created ${topic} on ${kafka.saslSsl}`);
    const produced = await lk(['produce', '--topic', topic, '--file', join(dir.path, 'events.jsonl'), ...p.common()], {
      ...env,
      LK_LOG_LEVEL: 'trace',
    });
    expect(produced.code, produced.stderr).toBe(0);
    expect(produced.stdout).toContain(`accepted ${lines.length} event(s) into ${topic}`);
    expect(produced.stdout).toContain(`rejected ${bad.length} line(s) into ${topic}.dlq`);
    const letters = (await readTopic(log, `${topic}.dlq`)).flat().map(readDeadLetter);
    expect(letters.map((l) => l.line).sort((a, b) => a - b)).toEqual([301, 302, 303]);

    const statusPort = await freePort();
    const speed: LkProcess = p.startSpeed('a', ['--status-port', String(statusPort)]);
    await p.batchRun();
    const servePort = await freePort();
    const serve = p.spawn(['serve', '--port', String(servePort), '--version', p.version, '--topic', topic, ...p.common()]);
    const url = `http://127.0.0.1:${servePort}`;
    await eventually(
      async () => ((await fetch(`${url}/readyz`).catch(() => undefined))?.ok ? true : undefined),
      `lk serve ready (${serve.output().slice(-500)})`,
    );
    await p.speedCaughtUp();
    await p.servingCaughtUp(url);
    const run = (await currentBatchRun(dir.path, p.version))!;
    await p.batchInstalled(url, run.manifest.runId);

    // Every window of both granularities equals the oracle.
    const from = new Date(start - HOUR).toISOString();
    const to = new Date(start + 4 * HOUR).toISOString();
    const problems: string[] = [];
    let compared = 0;
    for (const [g, size] of [
      ['MINUTE', MINUTE],
      ['HOUR', HOUR],
    ] as const) {
      const want = oracle(events, size);
      const keys = [...want.keys()];
      const d = await gqlData<any>(
        url,
        `{ ${keys.map((k, i) => `k${i}: series(metric: "spend", key: "${k}", granularity: ${g}, from: "${from}", to: "${to}", version: "${p.version}") { windowStart count sum }`).join(' ')} }`,
      );
      seen('graphql series', JSON.stringify(d));
      keys.forEach((k, i) => {
        const got = new Map((d[`k${i}`] as any[]).map((w) => [Date.parse(w.windowStart), w]));
        for (const [s, w] of want.get(k)!) {
          compared++;
          const a = got.get(s);
          if (!a || a.count !== w.count || Math.abs((a.sum ?? 0) - (w.sum ?? 0)) > 1e-6)
            problems.push(`${g} ${k} ${new Date(s).toISOString()}: got ${JSON.stringify(a)}, want ${JSON.stringify(w)}`);
        }
        for (const s of got.keys()) if (!want.get(k)!.has(s)) problems.push(`${g} ${k}: unexpected window ${new Date(s).toISOString()}`);
      });
    }
    expect(problems.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expect(compared).toBeGreaterThan(100); // 6 campaigns over about 27 minutes, 2 granularities
    const status = await gqlData<any>(
      url,
      `{ pipeline(version: "${p.version}") { version speed { partitions { partition committedOffset } } deadLetters { topic total byReason { reason count } } } }`,
    );
    seen('graphql pipeline', JSON.stringify(status));
    expect(status.pipeline.deadLetters.total).toBe(bad.length);

    // The speed layer's and serving's own endpoints.
    for (const path of ['/status', '/metrics']) seen(`speed ${path}`, await (await fetch(`http://127.0.0.1:${statusPort}${path}`)).text());
    seen('serve /metrics', await (await fetch(`${url}/metrics`)).text());

    // The same file, given to Kafka's own console consumer, reads the events lk wrote.
    const read = await consoleConsume(kafka.saslSsl, saslFile, topic, lines.length);
    expect(read.map((l) => JSON.parse(l).id).sort()).toEqual(events.map((e) => e.id).sort());

    await p.stop(speed);
    await p.stop(serve);
    expect(speed.output()).not.toMatch(/"level":50/); // no error logged
    // The unused key is reported once by the speed layer (one process, several clients).
    expect(speed.output().match(/not used by lk: linger\.ms/g)).toHaveLength(1);
    seen('lk speed', speed.output());
    seen('lk serve', serve.output());
    await p.close();
  });

  it('connects with mutual TLS: PKCS12 stores from keytool and openssl, and a PEM key store with an encrypted key', async () => {
    const topic = uniqueName('mtls');
    const p12 = kafka.writeProperties('mtls-p12.properties', {
      'security.protocol': 'SSL',
      'ssl.truststore.type': 'PKCS12',
      'ssl.truststore.location': kafka.pki.truststoreP12,
      'ssl.truststore.password': kafka.pki.storePassword,
      'ssl.keystore.type': 'PKCS12',
      'ssl.keystore.location': kafka.pki.clientKeystoreP12,
      'ssl.keystore.password': kafka.pki.storePassword,
    });
    const pem = kafka.writeProperties('mtls-pem.properties', {
      'security.protocol': 'SSL',
      'ssl.truststore.type': 'PEM',
      'ssl.truststore.location': kafka.pki.caPem,
      'ssl.keystore.type': 'PEM',
      'ssl.keystore.location': kafka.pki.clientKeystorePem,
      'ssl.key.password': kafka.pki.keyPassword,
    });
    const events = [...generateEventLines({ seed: SEED + 1, count: 50, startTime: Date.now() - HOUR, eventsPerSecond: 1 })];
    writeFileSync(join(dir.path, 'mtls.jsonl'), events.join('\n') + '\n');
    const common = ['--brokers', kafka.mtls, '--data-dir', join(dir.path, 'mtls-data')];
    expect((await lk(['topics', 'create', '--topic', topic, '--partitions', '2', '--kafka-config', p12, ...common])).code).toBe(0);
    const produced = await lk(['produce', '--topic', topic, '--file', join(dir.path, 'mtls.jsonl'), '--kafka-config', pem, ...common]);
    expect(produced.code, produced.stderr).toBe(0);
    const listed = await lk(['topics', 'list', '--kafka-config', p12, ...common]);
    expect(listed.stdout).toContain(`${topic}\tpartitions=2\trecords=${events.length}`);
    const ids = events.map((l) => JSON.parse(l).id as string).sort();
    for (const file of [p12, pem])
      expect((await consoleConsume(kafka.mtls, file, topic, events.length)).map((l) => JSON.parse(l).id).sort()).toEqual(ids);
  });

  it('fails each misconfiguration with exit code 1 and one line naming cause and fix, within 60 s', async () => {
    const file = (name: string, entries: Record<string, string>) => kafka.writeProperties(`${name}.properties`, entries);
    const ssl = (extra: Record<string, string>) => ({ 'security.protocol': 'SSL', 'ssl.truststore.location': kafka.pki.caPem, ...extra });
    const data = ['--data-dir', join(dir.path, 'failures'), '--metrics', join(dir.path, 'metrics.yaml')];
    const cases: { what: string; args: string[]; line: RegExp }[] = [
      {
        what: 'a wrong password, in a long-running command',
        args: [
          'speed',
          '--topic',
          'events',
          '--kafka-config',
          file(
            'wrong-password',
            kafka.saslSslProperties({
              'sasl.jaas.config': kafka.saslSslProperties()['sasl.jaas.config']!.replace(kafka.password, 'not-the-password'),
            }),
          ),
          '--brokers',
          kafka.saslSsl,
        ],
        line: /^lk: SASL authentication failed for user "lk-user" with mechanism SCRAM-SHA-512 at 127\.0\.0\.1:\d+: the broker refused the user name or password; fix username and password in sasl\.jaas\.config \(--kafka-config .*wrong-password\.properties\)/,
      },
      {
        what: 'an untrusted server certificate',
        args: [
          'produce',
          '--topic',
          'events',
          '--file',
          join(dir.path, 'mtls.jsonl'),
          '--brokers',
          kafka.saslSsl,
          '--kafka-config',
          file('untrusted', kafka.saslSslProperties({ 'ssl.truststore.location': kafka.pki.otherCaPem })),
        ],
        line: /^lk: the TLS certificate of the broker at 127\.0\.0\.1:\d+ is not trusted \(.*; issued by CN=lk-test-ca\): put the CA that signed it in ssl\.truststore\.location \(--kafka-config .*untrusted\.properties; now trusting CN=lk-test-other-ca\)$/,
      },
      {
        what: 'a host name the certificate does not hold',
        args: ['topics', 'list', '--brokers', kafka.wrongHost, '--kafka-config', file('wrong-host', ssl({}))],
        line: /^lk: the TLS certificate of the broker at 127\.0\.0\.1:\d+ does not name the host "127\.0\.0\.1" \(it names DNS:broker\.elsewhere\.invalid\): .*set ssl\.endpoint\.identification\.algorithm= \(empty\) to skip the host-name check/,
      },
      {
        what: 'a plaintext client on the TLS listener (no --kafka-config)',
        args: ['topics', 'list', '--brokers', kafka.saslSsl],
        line: /^lk: the broker at 127\.0\.0\.1:\d+ speaks TLS but security\.protocol is PLAINTEXT: set security\.protocol=SSL \(or SASL_SSL\) and ssl\.truststore\.location in a client properties file given with --kafka-config \(no --kafka-config given\)$/,
      },
      {
        what: 'a TLS client on the plaintext listener',
        args: ['topics', 'list', '--brokers', kafka.plaintext, '--kafka-config', saslFile],
        line: /^lk: the broker at 127\.0\.0\.1:\d+ does not speak TLS on this port but security\.protocol is SASL_SSL: connect to the broker's TLS listener, or set security\.protocol=SASL_PLAINTEXT/,
      },
      {
        what: 'no client certificate on the mTLS listener',
        args: ['topics', 'list', '--brokers', kafka.mtls, '--kafka-config', file('no-client-cert', ssl({}))],
        line: /^lk: the broker at 127\.0\.0\.1:\d+ requires a client certificate \(mutual TLS; TLS alert: [a-z ]+\): set ssl\.keystore\.location/,
      },
      {
        what: 'a client certificate of another CA on the mTLS listener',
        args: [
          'topics',
          'list',
          '--brokers',
          kafka.mtls,
          '--kafka-config',
          file('stranger', ssl({ 'ssl.keystore.location': kafka.pki.strangerKeystorePem })),
        ],
        line: /^lk: the broker at 127\.0\.0\.1:\d+ refused the client certificate \(TLS alert: [a-z ]+\): use a certificate signed by a CA the broker's listener trusts/,
      },
      {
        what: 'TLS without SASL on the SASL_SSL listener',
        args: ['topics', 'list', '--brokers', kafka.saslSsl, '--kafka-config', file('no-sasl', ssl({}))],
        line: /^lk: the broker at 127\.0\.0\.1:\d+ expects SASL authentication \(mechanisms SCRAM-SHA-512\) but security\.protocol is SSL: set security\.protocol=SASL_SSL, sasl\.mechanism and sasl\.jaas\.config/,
      },
    ];
    // Two at a time: each command's 60 s is its own, not a share of eight on two cores.
    const results: Awaited<ReturnType<typeof lk>>[] = [];
    for (let i = 0; i < cases.length; i += 2) {
      const pair = cases.slice(i, i + 2);
      results.push(
        ...(await Promise.all(
          pair.map((c) => lk([...c.args, ...(c.args[0] === 'topics' ? ['--data-dir', join(dir.path, 'failures')] : data)])),
        )),
      );
    }
    // Reported, not asserted: the deadline above is the bound.
    console.log(`failures reported after: ${cases.map((c, i) => `${c.what} ${(results[i]!.ms / 1000).toFixed(1)} s`).join('; ')}`);
    cases.forEach((c, i) => {
      const r = results[i]!;
      expect(r.killed, `${c.what}: still running after ${FAILURE_DEADLINE_MS / 1000} s`).toBe(false);
      expect(r.code, `${c.what}: ${r.stderr}`).toBe(1);
      const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('lk: '));
      expect(errorLines, c.what).toHaveLength(1);
      expect(errorLines[0], c.what).toMatch(c.line);
      expect(r.stderr, c.what).not.toMatch(/\n\s+at /); // no stack trace
    });

    // Mistakes in the file itself are configuration errors: exit code 2 and one line, before any connection.
    const mistakes = await Promise.all([
      lk(['topics', 'list', '--brokers', kafka.saslSsl, '--kafka-config', file('no-mechanism', { 'security.protocol': 'SASL_SSL' })]),
      lk(['topics', 'list', '--kafka-config', file('no-brokers', ssl({}))]),
    ]);
    expect(mistakes.map((r) => [r.code, r.stderr.trim()])).toEqual([
      [2, expect.stringMatching(/^lk: .*no-mechanism\.properties: sasl\.mechanism: security\.protocol=SASL_SSL needs sasl\.mechanism: /)],
      [
        2,
        expect.stringMatching(
          /^lk: --kafka-config .*no-brokers\.properties is for Kafka, but no brokers are given: set --brokers\/KAFKA_BROKERS or bootstrap\.servers in the file$/,
        ),
      ],
    ]);

    // The host-name check switched off: the same wrong-host listener is accepted.
    const unchecked = await lk([
      'topics',
      'list',
      '--brokers',
      kafka.wrongHost,
      '--data-dir',
      join(dir.path, 'failures'),
      '--kafka-config',
      file('unchecked', ssl({ 'ssl.endpoint.identification.algorithm': '' })),
    ]);
    expect(unchecked.code, unchecked.stderr).toBe(0);
  });

  it('never prints a secret: not in any output, --help, /status, /metrics or GraphQL', async () => {
    for (const cmd of [['topics', 'create'], ['produce'], ['speed'], ['batch', 'run'], ['serve'], ['replay'], ['versions']]) {
      const help = await lk([...cmd, '--help'], { LK_KAFKA_CONFIG: saslFile });
      const text = help.stdout.replace(/\s+/g, ' ');
      expect(text, cmd.join(' ')).toContain('--kafka-config <file>');
      expect(text, cmd.join(' ')).toContain('env: LK_KAFKA_CONFIG');
    }
    expect(outputs.length).toBeGreaterThan(25);
    const secrets = [kafka.password, kafka.pki.storePassword, kafka.pki.keyPassword];
    const leaks = outputs.flatMap((o) => secrets.filter((s) => o.text.includes(s)).map(() => o.what));
    expect(leaks).toEqual([]);
  });
});
