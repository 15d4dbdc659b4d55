/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * Issue 16, part 1, as a user would meet it (`npm run test:outages`, several minutes; not part of
 * `npm test`): on a broker of its own, `lk speed`, `lk batch serve` and `lk serve` run as child
 * processes and are never restarted, while the test produces a stream of events. The broker is
 * SIGKILLed three times at seeded moments and started again on its own data each time:
 *
 *   1. while `lk speed` holds a checkpoint just before its commit (pause point
 *      `speed.checkpoint.commit`): the commit goes to a dead broker; down 5-60 s (seeded);
 *   2. at a seeded moment, down 5-60 s (seeded);
 *   3. at a seeded moment, down 3 minutes (longer than the transaction timeout: the broker aborts
 *      the transactions left open when it comes back, and bumps their producers' epochs).
 *
 * During every outage each process must report not ready (/readyz), and afterwards ready again;
 * each must log exactly one "Kafka unreachable" and one "Kafka reachable again" line per outage
 * (`lk serve` runs two worker processes, as it does by default on two cores: each of them).
 * At the end the speed view equals the speed oracle (computed from the log's records), and the
 * GraphQL answers over HTTP, once a batch run covers everything, equal the oracle computed from
 * the events the test produced. The seed is printed; a failure prints the command that reruns it.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import type { LogProducer } from '../../services/log/eventLog.ts';
import { KafkaLog } from '../../services/log/kafka/kafkaLog.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { loadMetricDefinitions, type Granularity } from '../../services/metrics/definitions.ts';
import { fieldValuesOf } from '../../services/metrics/fieldSemantics.ts';
import { currentBatchRun } from '../sharedState.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { computeOracle } from '../../streaming/__tests__/support/oracle.ts';
import { compareWithOracle, createEventsTopic, readView, writeTestMetrics } from '../../streaming/__tests__/support/harness.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { hllOf, oracleWindows, type LoggedEvent } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { BrokerOfItsOwn } from '../brokerOfItsOwn.ts';
import { eventually, freePort, tempDir } from '../helpers.ts';
import { readTopic } from '../logReader.ts';
import { Pipeline, killAll, type LkProcess } from '../e2e/pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 160_001);
const RERUN = `rerun: LK_TEST_SEED=${SEED} npx vitest run --config vitest.outages.config.ts test/outages/brokerOutages.outage.ts`;
const TOPIC = 'events';
const VERSION = 'v1';
const PARTITIONS = 3;
const OUT_OF_ORDERNESS_MS = 2000;
const EVENTS = 30_000;
/** The stream: this many events every STREAM_TICK_MS (about 200 events/s: a few minutes of sending, spread over the outages). */
const STREAM_CHUNK = 80;
const STREAM_TICK_MS = 400;
const LONG_OUTAGE_MS = 3 * 60_000;
const SERVE_WORKERS = 2;
const UNREACHABLE = 'Kafka unreachable';
const BACK = 'Kafka reachable again';

/** Per process id, how many of the JSON log lines in `output` begin their message with `msg`. */
function linesPerPid(output: string, msg: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of output.split('\n')) {
    if (!line.startsWith('{') || !line.includes(`"msg":"${msg}`)) continue;
    const pid = (JSON.parse(line) as { pid: number }).pid;
    counts.set(pid, (counts.get(pid) ?? 0) + 1);
  }
  return counts;
}

const rand = seededRandom(SEED);
const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

async function readyz(port: number): Promise<number> {
  return fetch(`http://127.0.0.1:${port}/readyz`).then(
    (r) => r.status,
    () => 0,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`lk speed, lk batch serve and lk serve ride out broker outages (seed ${SEED})`, () => {
  const dir = tempDir('lk-outages-');
  let broker: BrokerOfItsOwn | undefined;

  afterAll(async () => {
    killAll();
    await broker?.stop();
    dir.remove();
  });

  it(
    'three SIGKILLs of the broker, one during a checkpoint commit and one for 3 minutes: exact answers, never restarted',
    { timeout: 30 * 60_000 },
    async () => {
      const started = Date.now();
      console.log(`broker outages: seed ${SEED}\n${RERUN}`);
      broker = await BrokerOfItsOwn.start(join(dir.path, 'kafka'));
      const own = broker;
      const metricsFile = writeTestMetrics(dir.path);
      const p = new Pipeline(join(dir.path, 'data'), metricsFile, TOPIC, VERSION, {}, { brokers: [own.brokers] });
      await createEventsTopic(p.log, TOPIC, PARTITIONS);

      const lines = [
        ...generateEventLines({
          seed: SEED,
          count: EVENTS,
          startTime: Date.UTC(2026, 3, 1, 8, 0),
          eventsPerSecond: 20,
          duplicateRate: 0.05,
          outOfOrderRate: 0.1,
          outOfOrderMs: 3000,
          lateRate: 0.01,
          lateMinMs: 60_000,
          lateMaxMs: 30 * 60_000,
          campaigns: 8,
          adsPerCampaign: 3,
          users: 2000,
        }),
      ];

      // The outages, drawn from the seed: the first at the seeded n-th checkpoint commit.
      const pauseAt = between(10, 40);
      const outages = [
        { what: `during checkpoint commit #${pauseAt}`, downMs: between(5, 60) * 1000, upBeforeMs: 0 },
        { what: 'at a seeded moment', downMs: between(5, 60) * 1000, upBeforeMs: between(15, 45) * 1000 },
        { what: 'at a seeded moment, for 3 minutes', downMs: LONG_OUTAGE_MS, upBeforeMs: between(15, 45) * 1000 },
      ];
      console.log(`outages: ${outages.map((o) => `${o.what}: down ${o.downMs / 1000} s after ${o.upBeforeMs / 1000} s up`).join('; ')}`);

      const [speedPort, batchPort, servePort] = [await freePort(), await freePort(), await freePort()];
      const pauseDir = join(dir.path, 'pause');
      const marker = join(pauseDir, 'speed.checkpoint.commit');
      const common = p.common();
      const speed = p.startSpeed(
        'outages',
        ['--checkpoint-interval', '500ms', '--out-of-orderness', `${OUT_OF_ORDERNESS_MS}ms`, '--status-port', String(speedPort)],
        { LK_PAUSE_AT: `speed.checkpoint.commit@${pauseAt}`, LK_PAUSE_DIR: pauseDir },
      );
      const batch = p.spawn([
        'batch',
        'serve',
        '--topic',
        TOPIC,
        '--version',
        VERSION,
        '--interval',
        '20s',
        '--roll-interval',
        '2s',
        '--status-port',
        String(batchPort),
        ...common,
      ]);
      // lk serve as it runs by default, in worker processes (two, whatever the machine's cores).
      const serve = p.spawn(
        [
          'serve',
          '--port',
          String(servePort),
          '--workers',
          String(SERVE_WORKERS),
          '--version',
          VERSION,
          '--topic',
          TOPIC,
          '--batch-poll',
          '500ms',
          '--max-cost',
          '100000000',
          ...common,
        ],
        { LK_SERVE_WORKERS: String(SERVE_WORKERS) },
      );
      const processes: [string, LkProcess, number][] = [
        ['lk speed', speed, speedPort],
        ['lk batch serve', batch, batchPort],
        ['lk serve', serve, servePort],
      ];
      const said = (what: string) =>
        `${what} (after ${Math.round((Date.now() - started) / 1000)} s)\n${RERUN}\n` +
        processes.map(([name, proc]) => `--- ${name} said:\n${proc.output().slice(-2500)}`).join('\n') +
        `\n--- broker log:\n${own.logTail()}`;
      const allRunning = (when: string) => {
        for (const [name, proc] of processes) expect(proc.child.exitCode, said(`${name} exited ${when}`)).toBeNull();
      };
      const readiness = async (status: number, what: string, timeoutMs: number) => {
        for (const [name, , port] of processes)
          await eventually(
            async () => ((await readyz(port)) === status ? true : undefined),
            said(`${name} /readyz ${status} ${what}`),
            timeoutMs,
          );
      };

      // The stream, produced meanwhile by the test itself: a failed send is sent again once the
      // broker is back (copies are duplicates by id: the speed and batch oracles count them once).
      const log = new KafkaLog({ brokers: [own.brokers], clientId: 'outage-stream' });
      let sent = 0;
      let streamError: unknown;
      const stream = (async () => {
        let producer: LogProducer | undefined;
        while (sent < lines.length) {
          const chunk = lines.slice(sent, sent + STREAM_CHUNK).map((l) => ({ key: (JSON.parse(l) as { id: string }).id, value: l }));
          try {
            producer ??= await log.producer();
            await producer.send(TOPIC, chunk);
            sent += chunk.length;
            await sleep(STREAM_TICK_MS);
          } catch {
            await producer?.close().catch(() => undefined);
            producer = undefined;
            await sleep(1000);
          }
        }
        await producer?.close();
      })().catch((err: unknown) => (streamError = err));

      try {
        await readiness(200, 'before the first outage', 180_000);
        for (const [i, outage] of outages.entries()) {
          if (i === 0) await eventually(() => (existsSync(marker) ? true : undefined), said('the pause point'), 180_000);
          else await sleep(outage.upBeforeMs);
          allRunning(`before outage ${i + 1}`);
          console.log(`outage ${i + 1} (${outage.what}): SIGKILL at ${Math.round((Date.now() - started) / 1000)} s, ${sent} events sent`);
          await own.kill();
          if (i === 0) rmSync(marker); // the held commit now goes to a dead broker
          const downAt = Date.now();
          // Said within a second or two; the broker stays down at least until then.
          await readiness(503, `during outage ${i + 1}`, Math.max(outage.downMs, 15_000));
          await sleep(Math.max(0, outage.downMs - (Date.now() - downAt)));
          await own.restart();
          await readiness(200, `after outage ${i + 1}`, 240_000);
          allRunning(`after outage ${i + 1}`);
        }
        await stream;
        expect(streamError, 'the test stream').toBeUndefined();
        console.log(`all ${lines.length} events sent at ${Math.round((Date.now() - started) / 1000)} s`);

        // Speed: every partition committed to its end, and its view equals the oracle of the log.
        await p.speedCaughtUp(said('lk speed caught up'), 600_000);
        const records = (await readTopic(p.log, TOPIC)).flat();
        const inLog = records.map((r) => r.value!.toString('utf8'));
        const speedOracle = computeOracle(inLog, PARTITIONS, OUT_OF_ORDERNESS_MS);
        const speedProblems = compareWithOracle(await readView(p.log, speedViewTopic(VERSION)), speedOracle);
        expect(speedProblems.slice(0, 10), said(`${speedProblems.length} differences between the speed view and the oracle`)).toEqual([]);

        // Batch: a run whose cut covers the whole log, installed by serving.
        const ends = await p.log.endOffsets(TOPIC);
        const runId = await eventually(
          async () => {
            const run = await currentBatchRun(p.dataDir, VERSION);
            return run && ends.every((end, k) => (run.manifest.cut[k] ?? 0) >= end) ? run.manifest.runId : undefined;
          },
          said('a batch run covering the whole log'),
          600_000,
        );
        await p.batchInstalled(`http://127.0.0.1:${servePort}`, runId);
        await p.servingCaughtUp(`http://127.0.0.1:${servePort}`);

        // GraphQL over HTTP against the oracle of the events the test produced.
        await expectAnswersEqualOracle(`http://127.0.0.1:${servePort}`, metricsFile, lines, said);

        // Every process that talks to Kafka (lk serve: each worker) said it once per outage, each way.
        for (const [name, proc] of processes) {
          const down = linesPerPid(proc.output(), UNREACHABLE);
          const back = linesPerPid(proc.output(), BACK);
          const pids = name === 'lk serve' ? SERVE_WORKERS : 1;
          expect(down.size, said(`${name}: processes that said "${UNREACHABLE}"`)).toBe(pids);
          for (const [pid, n] of down) expect(n, said(`${name} (pid ${pid}): one "${UNREACHABLE}" line per outage`)).toBe(outages.length);
          expect([...back.keys()].sort(), said(`${name}: processes that said "${BACK}"`)).toEqual([...down.keys()].sort());
          for (const [pid, n] of back) expect(n, said(`${name} (pid ${pid}): one "${BACK}" line per outage`)).toBe(outages.length);
        }
        allRunning('at the end');
      } finally {
        for (const [, proc] of processes) await p.stop(proc);
        await log.close();
        await p.close();
        if (process.env.LK_TEST_OUTAGE_LOGS) {
          for (const [name, proc] of processes)
            writeFileSync(join(process.env.LK_TEST_OUTAGE_LOGS, `${name.replace(/ /g, '-')}.log`), proc.output());
        }
      }
      for (const [name, proc] of processes) expect((await proc.exited).code, said(`${name} stopped gracefully`)).toBe(0);
      console.log(`broker outages: passed in ${Math.round((Date.now() - started) / 1000)} s (seed ${SEED})`);
    },
  );
});

/** Every key's windows, the top keys and the totals of every metric and granularity, against the oracle. */
async function expectAnswersEqualOracle(url: string, metricsFile: string, lines: string[], said: (what: string) => string): Promise<void> {
  const events: LoggedEvent[] = lines.map((l, i) => {
    const raw = JSON.parse(l);
    return { id: raw.id, ts: Date.parse(raw.ts), fields: raw, values: fieldValuesOf(raw, {}), partition: 0, offset: i, appendTime: 0 };
  });
  const times = events.map((e) => e.ts);
  const from = new Date(Math.floor(Math.min(...times) / 86_400_000) * 86_400_000).toISOString();
  const to = new Date(Math.ceil((Math.max(...times) + 1) / 86_400_000) * 86_400_000 + 86_400_000).toISOString();
  for (const def of loadMetricDefinitions(metricsFile).metrics) {
    const c = compileMetric(def);
    const keys = [...new Set(events.filter((e) => c.matches(e.values)).map((e) => c.keyOf(e.values)!))].sort();
    for (const g of def.granularities as Granularity[]) {
      const where = `${def.name}/${g}`;
      const q = `{ ${keys.map((k, i) => `k${i}: series(metric: "${def.name}", key: "${k}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { windowStart count sum distinct }`).join(' ')}
        total(metric: "${def.name}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { count distinct } }`;
      const d = await gqlData<any>(url, q);
      let all = 0;
      keys.forEach((key, i) => {
        const oracle = oracleWindows(events, def, g, key);
        const got = d[`k${i}`] as any[];
        expect(
          got.map((w) => [Date.parse(w.windowStart), w.count, w.distinct]),
          said(`${where} ${key}: GraphQL against the oracle`),
        ).toEqual([...oracle].sort((a, b) => a[0] - b[0]).map(([s, w]) => [s, w.count, w.distinct]));
        for (const w of got) {
          const o = oracle.get(Date.parse(w.windowStart))!;
          if (o.sum === null) expect(w.sum).toBeNull();
          else expect(w.sum, said(`${where} ${key} sum`)).toBeCloseTo(o.sum, 6);
        }
        all += [...oracle.values()].reduce((a, w) => a + w.count, 0);
      });
      expect(d.total.count, said(`${where} total`)).toBe(all);
      if (def.distinct) {
        const users = new Set<string>();
        for (const w of oracleWindows(events, def, g, null).values()) for (const u of w.users) users.add(u);
        expect(d.total.distinct, said(`${where} total distinct`)).toBe(hllOf(users));
      }
    }
  }
}
