/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * The sessions pipeline scenario, run by sessionsPipeline.spec.ts with the DuckDB engine (npm test)
 * and by sessionsPipeline.spark.ts with the Spark engine (npm run test:spark): session windows
 * through the whole pipeline on the real broker: generated riders' trips go to a
 * 3-partition events topic (each in its id's partition, some resent, some copied into another
 * partition as a misplaced producer would, and late trips sent after the speed job has read the
 * rest: one bridges two sessions of rider "b"), `lk speed` computes partial sessions, serving
 * (in process, real HTTP) answers GraphQL `sessions`. Three times, each against an oracle that
 * chains each rider's trips by the gap straight from the events:
 *
 * 1. from the speed view alone: per-partition dedup (a copy in another partition is counted
 *    there too, and marks its session provisional), every session SPEED;
 * 2. after `lk batch run` (`--engine duckdb` or `spark`, the run record naming it): deduplicated
 *    over the whole lake, every session BATCH (the speed rows saw no further than the run's cut);
 * 3. after one more trip extends a session with trips in several partitions: that session MIXED
 *    (the speed partial of the new trip's partition, the batch partials of the others), every
 *    other session still BATCH, all equal to the whole-lake oracle.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { hllOf } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { currentBatchRun } from '../sharedState.ts';
import { tempDir, uniqueName } from '../helpers.ts';
import { Pipeline, killAll, startServing, testVersion, type LkProcess, type Serving } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const PARTITIONS = 3;
const GAP = 10 * 60_000;
const START = Date.UTC(2026, 1, 2, 8, 0);
const METRICS = `version: 1
metrics:
  - name: rides
    filter: { type: trip }
    key: rider
    value: fare
    distinct: driver
    session: { gap: 10m }
    allowedLateness: 1d
`;

interface Trip {
  id: string;
  type: 'trip';
  ts: number;
  rider: string;
  driver: string;
  fare: number;
}

/** A trip as the log holds it: the partition it was written to. */
interface Sent {
  trip: Trip;
  partition: number;
}

interface Span {
  start: number;
  end: number;
  trips: Sent[];
}

/** Sessions of trips (already deduplicated as the answer counts them): a new one where the step is >= the gap. */
function chain(trips: Sent[]): Span[] {
  const out: Span[] = [];
  for (const s of [...trips].sort((a, b) => a.trip.ts - b.trip.ts)) {
    const last = out.at(-1);
    if (last && s.trip.ts - last.end < GAP) {
      last.end = s.trip.ts;
      last.trips.push(s);
    } else out.push({ start: s.trip.ts, end: s.trip.ts, trips: [s] });
  }
  return out;
}

/** The speed view's counting: dedup by id within each partition (a copy in another partition counts there). */
const perPartitionDedup = (sent: Sent[]) => [...new Map(sent.map((s) => [`${s.partition}/${s.trip.id}`, s])).values()];
/** The batch run's counting: dedup by id over the whole log, the first copy by partition then offset. */
const wholeLogDedup = (sent: Sent[]) => {
  const first = new Map<string, Sent>();
  for (const s of [...sent].sort((a, b) => a.partition - b.partition)) if (!first.has(s.trip.id)) first.set(s.trip.id, s);
  return [...first.values()];
};

/** An id of `prefix` whose home partition is `partition`. */
function idIn(prefix: string, partition: number): string {
  for (let i = 0; ; i++) if (partitionForKey(`${prefix}${i}`, PARTITIONS) === partition) return `${prefix}${i}`;
}

/** What differs between the engines: the batch run's flags, and the command that reruns a seed. */
export interface SessionsEngine {
  engine: 'duckdb' | 'spark';
  batchRunArgs: string[];
  rerunCommand: string;
}

export function describeSessionsPipeline({ engine, batchRunArgs, rerunCommand }: SessionsEngine): void {
  const rerun = `rerun: LK_TEST_SEED=${SEED} ${rerunCommand}`;
  describe(`sessions through lk speed, lk batch run --engine ${engine} and serving, equal to the oracle`, () => {
    const dir = tempDir('lk-sessions-e2e-');
    const topic = uniqueName('sessions-events');
    const version = testVersion('sess');
    const metricsFile = join(dir.path, 'metrics.yaml');
    writeFileSync(metricsFile, METRICS);
    const pipeline = new Pipeline(dir.path, metricsFile, topic, version);
    const r = seededRandom(SEED);
    const sent: Sent[] = [];
    let speed: LkProcess | undefined;
    let serving: Serving;

    async function send(records: Sent[]): Promise<void> {
      const producer = await pipeline.log.producer();
      try {
        await producer.send(
          topic,
          records.map((s) => ({ key: s.trip.id, value: JSON.stringify(s.trip), partition: s.partition })),
        );
      } finally {
        await producer.close();
      }
      sent.push(...records);
      await pipeline.speedCaughtUp();
      await pipeline.servingCaughtUp(serving.url);
    }

    /** Every rider's sessions over HTTP equal `want`'s; returns the answers by rider. */
    async function expectSessions(counted: Sent[], source: (s: Span) => string, provisional: (s: Span) => boolean): Promise<number> {
      const riders = [...new Set(counted.map((s) => s.trip.rider))].sort();
      let n = 0;
      for (const rider of riders) {
        const want = chain(counted.filter((s) => s.trip.rider === rider));
        const got = (
          await gqlData<any>(
            serving.url,
            `query($k: String!) { sessions(metric: "rides", key: $k, from: "${new Date(START - 86_400_000).toISOString()}", to: "${new Date(START + 86_400_000).toISOString()}") {
             start end count sum min max distinct source provisional } }`,
            { k: rider },
          )
        ).sessions;
        expect(
          got.map((s: any) => [Date.parse(s.start), Date.parse(s.end), s.count]),
          `${rider}: sessions (start, end, count) ${rerun}`,
        ).toEqual(want.map((w) => [w.start, w.end, w.trips.length]));
        want.forEach((w, i) => {
          const s = got[i];
          const where = `${rider} ${new Date(w.start).toISOString()} ${rerun}`;
          const fares = w.trips.map((t) => t.trip.fare);
          expect(s.sum, where).toBeCloseTo(
            fares.reduce((a, b) => a + b, 0),
            9,
          );
          expect([s.min, s.max], where).toEqual([Math.min(...fares), Math.max(...fares)]);
          expect(s.distinct, where).toBe(hllOf(w.trips.map((t) => t.trip.driver)));
          expect(s.source, where).toBe(source(w));
          expect(s.provisional, where).toBe(provisional(w));
        });
        n += want.length;
      }
      return n;
    }

    beforeAll(async () => {
      await pipeline.log.createTopics(eventTopicSpecs(topic, PARTITIONS));
      speed = pipeline.startSpeed('a');
      serving = await startServing(pipeline);
    }, 120_000);

    afterAll(async () => {
      await pipeline.stop(speed);
      await serving?.close();
      killAll();
      await pipeline.log.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
      await pipeline.close();
      dir.remove();
    });

    it('from the speed view alone, after a batch run, and with a session spanning the cut', async () => {
      // Six riders' trips over three hours, in bursts; each in its id's partition, one in twenty
      // resent there; riders r0 and r1 also have one in six copied into the next partition.
      let n = 0;
      const trip = (rider: string, ts: number, id = `t${n++}`): Trip => ({
        id,
        type: 'trip',
        ts,
        rider,
        driver: `d${Math.floor(r() * 30)}`,
        fare: Math.round(r() * 5000) / 100,
      });
      const first: Sent[] = [];
      const late: Sent[] = [];
      for (let k = 0; k < 6; k++) {
        let t = START + Math.floor(r() * 600_000);
        while (t < START + 3 * 3_600_000) {
          for (let i = 1 + Math.floor(r() * 5); i > 0; i--) {
            const e = trip(`r${k}`, t);
            const home = partitionForKey(e.id, PARTITIONS);
            // One in eight arrives after the rest (a late trip, possibly bridging two sessions).
            (r() < 0.125 ? late : first).push({ trip: e, partition: home });
            if (r() < 0.05) first.push({ trip: e, partition: home });
            if (k < 2 && r() < 1 / 6) first.push({ trip: e, partition: (home + 1) % PARTITIONS });
            t += Math.floor(r() * 9 * 60_000);
          }
          t += Math.floor(r() * 25 * 60_000);
        }
      }
      // Rider b: two sessions in one partition, then the late trip between them merges them.
      const t0 = START + 3_600_000;
      for (const [i, dt] of [0, 60_000, 15 * 60_000].entries()) first.push({ trip: trip('b', t0 + dt, idIn(`b${i}-`, 0)), partition: 0 });
      late.push({ trip: trip('b', t0 + 8 * 60_000, idIn('b3-', 0)), partition: 0 });

      await send(first);
      const bBefore = (
        await gqlData<any>(
          serving.url,
          `{ sessions(metric: "rides", key: "b", from: "${new Date(START).toISOString()}", to: "${new Date(START + 86_400_000).toISOString()}") { count } }`,
        )
      ).sessions;
      expect(bBefore.map((s: any) => s.count)).toEqual([2, 1]);
      await send(late);

      // 1. The speed view alone: every partition's copies counted there.
      const misplaced = (s: Span) => s.trips.some((t) => partitionForKey(t.trip.id, PARTITIONS) !== t.partition);
      const speedSessions = await expectSessions(perPartitionDedup(sent), () => 'SPEED', misplaced);
      const provisional = ['r0', 'r1'].flatMap((k) => chain(perPartitionDedup(sent).filter((s) => s.trip.rider === k))).filter(misplaced);
      expect(provisional.length, 'sessions holding a misplaced copy (provisional, counted twice by the speed view)').toBeGreaterThan(0);

      // 2. A batch run over the whole log: deduplicated by id, every session from the batch view.
      await pipeline.batchRun({}, batchRunArgs);
      const manifest = (await currentBatchRun(dir.path, version))!.manifest;
      expect(manifest.engine ?? 'duckdb', 'the run record names the engine').toBe(engine);
      const runId = manifest.runId;
      await pipeline.batchInstalled(serving.url, runId);
      const batchSessions = await expectSessions(
        wholeLogDedup(sent),
        () => 'BATCH',
        () => false,
      );

      // 3. One more trip, after the cut, extending a session with trips in several partitions (of a
      //    rider without misplaced copies): the speed partial of its partition wins there.
      const spread = ['r2', 'r3', 'r4', 'r5']
        .flatMap((k) => chain(wholeLogDedup(sent).filter((s) => s.trip.rider === k)))
        .find((s) => new Set(s.trips.map((t) => t.partition)).size >= 2)!;
      expect(spread, 'a session with trips in two partitions').toBeDefined();
      const rider = spread.trips[0]!.trip.rider;
      const x = spread.trips.at(-1)!.partition;
      const extra: Sent = { trip: trip(rider, spread.end + 60_000, idIn(`x-${rider}-`, x)), partition: x };
      await send([extra]);
      const extended = (s: Span) => s.trips.includes(extra);
      const mixedSessions = await expectSessions(
        wholeLogDedup(sent),
        (s) => (extended(s) ? 'MIXED' : 'BATCH'),
        () => false,
      );
      console.log(
        `[sessions, ${engine}] ${sent.length} trips sent: speed view ${speedSessions} sessions (${provisional.length} provisional), after the batch run ${batchSessions}, with the extended one (MIXED) ${mixedSessions}`,
      );
    });
  });
}
