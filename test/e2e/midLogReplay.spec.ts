/**
 * A version that starts in the middle of the log gives exact answers (issue 16, part 2), end to
 * end on the real broker, every start form: `lk replay --from <time>`, `--from <duration>`,
 * `--from <offsets>` (warmed up from the log, no lake yet), `--from <time>` after a lake that
 * ends before the start (warmed up from the lake, then the log), `--from lake --from-time`
 * (warmed up from the lake). Events keep arriving after every start, in the minute, hour and day
 * windows that span it.
 *
 * The oracle is computed here from the produced lines with plain code written from the
 * documented rules (docs/speed-layer.md: watermark = largest event time of the records counted
 * so far minus out-of-orderness; an id's entry lives while its time >= watermark - horizon, a
 * duplicate counts nothing and moves no watermark; a window closes once the watermark passes
 * start + size + lateness), replayed from each partition's first offset: the full replay. A
 * version started at s_p must then hold, in its speed view, exactly the full replay's rows of
 * every window not closed before s_p, stamped at or after s_p (a row claims the records below
 * its stamp: docs/merge-rule.md), and no row of a window closed before s_p (the batch view
 * answers those). Before the warm-up, the rows of windows that span the start counted only the
 * events after it.
 *
 * The lines add, on top of the generator's duplicates, out-of-order and late events: copies of
 * events a little further on (duplicates across every start), ids reused with a later event time
 * inside the dedup horizon (a duplicate that must not move the watermark) and after it (counted
 * again). And history that is gone is refused: with the log's start deleted and no lake, a
 * replay mid-log names where the history now starts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import type { ViewRow } from '../../services/views/viewRow.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { readVersionRecord } from '../../services/versions/versionRecord.ts';
import { ORACLE_METRICS, rowId } from '../../streaming/__tests__/support/oracle.ts';
import { caughtUp, createEventsTopic, produceLines, readView, writeTestMetrics } from '../../streaming/__tests__/support/harness.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { kafkaTool } from '../kafkaTools.ts';
import { localState } from '../sharedState.ts';
import { Pipeline, killAll, type LkProcess } from './pipeline.ts';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import { resolveLake } from '../../services/lake/lakeLocation.ts';
import { FLAT_EVENT_MAPPING } from '../../services/metrics/fieldSemantics.ts';
import { LakeSource } from '../../streaming/replay/lakeSource.ts';
import { readWarmUp } from '../../streaming/replay/warmUpSource.ts';
import { fingerprintId } from '../../streaming/state/idFingerprint.ts';
import { NARROW_RECORD } from '../../streaming/threads/recordPack.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1616);
const PARTITIONS = 3;
const OUT_OF_ORDERNESS_MS = 2000;
/** The test metric file's largest window plus its lateness (spend_by_campaign: day + 1 h): `lk speed`'s default horizon. */
const HORIZON_MS = 86_400_000 + 3_600_000;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/midLogReplay.spec.ts`;

/** The lines: three days of events at one every ~86 s, with duplicates, reused ids, out-of-order and late events. */
function testLines(): string[] {
  const base = [
    ...generateEventLines({
      seed: SEED,
      count: 3000,
      startTime: Date.UTC(2026, 0, 5, 7, 13),
      eventsPerSecond: 3000 / (3 * 86_400),
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 20 * 60_000,
      lateRate: 0.03,
      lateMinMs: 30 * 60_000,
      lateMaxMs: 3 * 3_600_000,
      campaigns: 4,
      adsPerCampaign: 3,
      users: 300,
    }),
  ];
  // Ids whose text is not their bytes as is (`\x...`, fieldSemantics.ts idText) or not ASCII: the
  // warm-up reads ids from the lake as text and fingerprints their bytes.
  base.forEach((line, i) => {
    const ev = JSON.parse(line) as { id: string };
    if (i % 7 === 3) base[i] = JSON.stringify({ ...ev, id: `\\xß-${ev.id}` });
    else if (i % 7 === 5) base[i] = JSON.stringify({ ...ev, id: `ü-${ev.id}` });
  });
  const rand = seededRandom(SEED + 1);
  const out: string[] = [];
  base.forEach((line, i) => {
    out.push(line);
    if (i < 40 || rand() > 0.06) return;
    const earlier = JSON.parse(base[i - 1 - Math.floor(rand() * 30)]!) as Record<string, unknown>;
    const kind = rand();
    if (kind < 0.3)
      out.push(JSON.stringify(earlier)); // a copy a little later: a duplicate
    else if (kind < 0.5 && i > 700) {
      // The id of an event ~17 h back with the current time: inside the horizon, a duplicate
      // whose first copy a warm-up may have read narrow.
      const back = JSON.parse(base[i - 700]!) as Record<string, unknown>;
      out.push(JSON.stringify({ ...back, ts: (JSON.parse(line) as { ts: string }).ts }));
    } else if (kind < 0.8) {
      // The same id with a later event time inside the horizon: a duplicate, whose time must not
      // move the watermark although it is the largest so far.
      const ts = Date.parse(String((JSON.parse(line) as { ts: string }).ts)) + 40 * 60_000;
      out.push(JSON.stringify({ ...earlier, ts: new Date(ts).toISOString() }));
    } else {
      // An id of more than a horizon ago, reused now: its entry expired, it counts again.
      const old = JSON.parse(base[Math.floor(rand() * Math.max(1, i - 1500))]!) as Record<string, unknown>;
      out.push(JSON.stringify({ ...old, ts: (JSON.parse(line) as { ts: string }).ts }));
    }
  });
  return out;
}

interface Expected {
  row: { count: number; sum: number | null; min: number | null; max: number | null; distinct: number | null };
  /** Offset after the record whose watermark closed the window (undefined: open at the end). */
  closedThrough: number | undefined;
}

/** The full replay of one partition's lines, by the documented rules (see the file comment). */
function fullReplay(lines: readonly string[], partition: number): Map<string, Expected> {
  let maxTs = -Infinity;
  const entries = new Map<string, number>();
  const windows = new Map<string, Expected & { hll: HyperLogLog | null; closesAt: number }>();
  const steps: { through: number; watermark: number }[] = [];
  lines.forEach((line, offset) => {
    const ev = JSON.parse(line) as Record<string, string | number>;
    const ts = Date.parse(String(ev.ts));
    const watermark = maxTs - OUT_OF_ORDERNESS_MS;
    const id = String(ev.id);
    const entry = entries.get(id);
    if (entry !== undefined && entry >= watermark - HORIZON_MS) return; // a duplicate: nothing else happens
    if (ts >= watermark - HORIZON_MS) entries.set(id, ts);
    for (const m of ORACLE_METRICS) {
      if (!m.types.includes(String(ev.type)) || ev[m.key] === undefined) continue;
      for (const g of m.granularities) {
        const windowStart = Math.floor(ts / g.ms) * g.ms;
        const closesAt = windowStart + g.ms + m.latenessMs;
        if (watermark > closesAt) continue; // late: dropped
        const key = rowId({ metric: m.name, granularity: g.name, windowStart, partition, key: String(ev[m.key]) });
        let w = windows.get(key);
        if (!w) {
          w = {
            row: { count: 0, sum: null, min: null, max: null, distinct: null },
            closedThrough: undefined,
            hll: m.distinct ? new HyperLogLog() : null,
            closesAt,
          };
          windows.set(key, w);
        }
        w.row.count++;
        const v = m.value ? ev[m.value] : undefined;
        if (typeof v === 'number') {
          w.row.sum = (w.row.sum ?? 0) + v;
          w.row.min = w.row.min === null ? v : Math.min(w.row.min, v);
          w.row.max = w.row.max === null ? v : Math.max(w.row.max, v);
        }
        if (m.distinct && ev[m.distinct] !== undefined) w.hll!.add(String(ev[m.distinct]));
      }
    }
    if (ts > maxTs) {
      maxTs = ts;
      steps.push({ through: offset + 1, watermark: maxTs - OUT_OF_ORDERNESS_MS });
    }
  });
  for (const w of windows.values()) {
    w.closedThrough = steps.find((s) => s.watermark > w.closesAt)?.through;
    if (w.hll) w.row.distinct = w.hll.estimate();
  }
  return windows;
}

describe(`a version that starts mid-log is exact (seed ${SEED})`, () => {
  const dir = tempDir('lk-e2e-midlog-');
  const topic = uniqueName('midlog');
  const suffix = Date.now().toString(36).slice(-5);
  const lines = testLines();
  const byPartition: string[][] = Array.from({ length: PARTITIONS }, () => []);
  for (const line of lines) byPartition[partitionForKey((JSON.parse(line) as { id: string }).id, PARTITIONS)]!.push(line);
  const full = byPartition.map((l, p) => fullReplay(l, p));
  let metricsFile: string;
  let p: Pipeline;
  const versions = new Map<string, LkProcess>();
  const speedArgs = ['--checkpoint-interval', '300ms', '--out-of-orderness', `${OUT_OF_ORDERNESS_MS}ms`];

  const common = () => ['--topic', topic, '--data-dir', dir.path, '--metrics', metricsFile];
  const replay = (name: string, from: string[], env: Record<string, string> = {}): string => {
    const v = `${name}-${suffix}`;
    versions.set(v, p.spawn(['replay', '--version', v, '--instance-id', 'r', ...speedArgs, ...from, ...common()], env));
    return v;
  };
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Produces the lines from `from` to `to` (shares of the whole), then marks a moment between bursts. */
  const produce = async (from: number, to: number) =>
    produceLines(p.log, topic, lines.slice(Math.floor(from * lines.length), Math.floor(to * lines.length)));
  async function between(): Promise<number> {
    await pause(1200);
    const t = Date.now();
    await pause(1200);
    return t;
  }

  /** Every difference between a version's speed view and the full replay's rows from its start on. */
  function differences(view: Map<string, ViewRow>, starts: number[]): string[] {
    const problems: string[] = [];
    const wanted = new Set<string>();
    full.forEach((rows, partition) => {
      const s = starts[partition]!;
      for (const [id, want] of rows) {
        if (want.closedThrough !== undefined && want.closedThrough <= s) continue; // closed before the start: batch's
        wanted.add(id);
        const got = view.get(id);
        if (!got) {
          problems.push(`missing ${id} (want count ${want.row.count}; start ${s})`);
          continue;
        }
        const distinct = got.distinctSketch === null ? null : HyperLogLog.fromBase64(got.distinctSketch).estimate();
        const have = { count: got.count, sum: got.sum, min: got.min, max: got.max, distinct };
        if (JSON.stringify(have) !== JSON.stringify(want.row))
          problems.push(`${id}: got ${JSON.stringify(have)}, want ${JSON.stringify(want.row)} (start ${s})`);
        if (got.throughOffset < s) problems.push(`${id}: stamped ${got.throughOffset}, below the start ${s}`);
        if (want.closedThrough !== undefined && got.throughOffset > want.closedThrough)
          problems.push(`${id}: stamped ${got.throughOffset}, after its window closed at ${want.closedThrough}`);
      }
    });
    for (const [id, got] of view)
      if (!wanted.has(id))
        problems.push(`unexpected ${id} (count ${got.count}, stamped ${got.throughOffset}): its window closed before the start`);
    return problems;
  }

  beforeAll(async () => {
    metricsFile = writeTestMetrics(dir.path);
    p = new Pipeline(dir.path, metricsFile, topic, `unused-${suffix}`);
    await createEventsTopic(p.log, topic, PARTITIONS);
  });

  afterAll(async () => {
    killAll();
    await p?.close();
    dir.remove();
  });

  it('every start form gives the full replay of every window open at its start, and nothing else', { timeout: 240_000 }, async () => {
    await produce(0, 0.3);
    const t1 = await between();
    await produce(0.3, 0.4);
    const t2 = await between();
    await produce(0.4, 0.5);
    // No lake yet: the warm-up reads the log from its start.
    const ends = await p.log.endOffsets(topic);
    replay('time', ['--from', new Date(t1).toISOString()]);
    replay('duration', ['--from', `${Math.ceil((Date.now() - t2) / 1000)}s`]);
    const offsets = ends.map((e, k) => `${k}:${Math.floor(e * 0.45)}`).join(',');
    const dry = await p.run(['replay', '--version', `dry-${suffix}`, '--from', offsets, '--dry-run', ...common()]);
    ends.forEach((e, k) => expect(dry).toContain(`partition ${k}: start offset ${Math.floor(e * 0.45)}`));
    expect(dry).toContain(
      `warm-up first, publishing nothing before offset ${Math.floor(ends[0]! * 0.45)}: log 0..${Math.floor(ends[0]! * 0.45)}`,
    );
    replay('offsets', ['--from', offsets]);
    // The lake holds everything produced so far; more comes, and a start after the lake's end
    // is warmed up from the lake, then the log.
    await p.run(['batch', 'run', '--topic', topic, '--version', `batch-${suffix}`, ...common().slice(2)]);
    await produce(0.5, 0.6);
    const t3 = await between();
    await produce(0.6, 0.7);
    // Killed right after its first committed checkpoint, which is one of the warm-up's (the
    // position, no row), then started again: the warm-up resumes from it.
    const lakelag = replay('lakelag', ['--from', new Date(t3).toISOString()], { LK_CRASH_AT: 'speed.checkpoint.committed' });
    const crashed = versions.get(lakelag)!;
    const exit = await Promise.race([crashed.exited, pause(60_000).then(() => null)]);
    expect(exit?.signal, `the crash point was not reached: ${crashed.output().slice(-1500)}`).toBe('SIGKILL');
    expect(crashed.output()).toContain('crash point speed.checkpoint.committed reached');
    replay('lakelag', ['--from', new Date(t3).toISOString()]);
    replay('lake', ['--from', 'lake', '--from-time', new Date(t2).toISOString()]);
    // Events keep arriving in the windows that span every start.
    await pause(1500);
    await produce(0.7, 1);
    const logEnds = await p.log.endOffsets(topic);
    const results: string[] = [];
    const failures: string[] = [];
    for (const [v, proc] of versions) {
      await eventually(
        async () => {
          if (proc.child.exitCode !== null) throw new Error(`${v} exited: ${proc.output().slice(-2000)}`);
          return (await caughtUp(p.log, `lk-speed-${v}`, topic)) || undefined;
        },
        `${v} caught up`,
        120_000,
      );
      const starts = (await readVersionRecord(localState(dir.path), v))!.origin.startOffsets!;
      // A start in the middle of every partition, or the test proves nothing.
      starts.forEach((s, k) => expect(s > 0 && s < logEnds[k]!, `${v}: start ${s} of partition ${k} (log end ${logEnds[k]})`).toBe(true));
      const problems = differences(await readView(p.log, speedViewTopic(v)), starts);
      results.push(`${v} from ${starts.join(',')}: ${problems.length} differences`);
      failures.push(...problems.slice(0, 4).map((d) => `${v}: ${d}`));
    }
    console.log(results.join('\n'));
    expect(failures, `${results.join('; ')}\n${rerun}`).toEqual([]);
    for (const proc of versions.values()) await p.stop(proc);
  });

  it("the lake's warm-up records are the log's: offsets, event times, id fingerprints and values", async () => {
    // The lake written by the first test's batch run: its records are the first of each partition.
    const source = await LakeSource.open(await resolveLake(undefined, dataDirLayout(dir.path), topic));
    try {
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const end = (await source.ends()).get(partition)!;
        expect(end).toBeGreaterThan(100);
        const want = byPartition[partition]!.slice(0, end);
        // Every record narrow (a floor above every time), then every record with its value.
        const narrow = await readWarmUp(source, partition, 0, end, Infinity, FLAT_EVENT_MAPPING, 10_000, false);
        const full = await readWarmUp(source, partition, 0, end, -Infinity, FLAT_EVENT_MAPPING, 10_000, false);
        expect([...narrow.packed.offsets]).toEqual(want.map((_, o) => o));
        expect([...full.packed.offsets]).toEqual(want.map((_, o) => o));
        const fp = new Int32Array(4);
        const values = Buffer.from(full.packed.values);
        want.forEach((line, i) => {
          const ev = JSON.parse(line) as { id: string; ts: string };
          fingerprintId(ev.id, fp); // MurmurHash3 of the id's UTF-8 bytes, as the speed layer's decoder hands them over
          expect(narrow.packed.valueEnds[i]).toBe(NARROW_RECORD);
          expect([...narrow.packed.narrow!.fingerprints.subarray(4 * i, 4 * i + 4)], `${ev.id} at offset ${i}`).toEqual([...fp]);
          expect(narrow.packed.narrow!.eventTimes[i]).toBe(Date.parse(ev.ts));
          const text = values.toString('utf8', i === 0 ? 0 : full.packed.valueEnds[i - 1], full.packed.valueEnds[i]);
          expect(text).toBe(line);
        });
      }
    } finally {
      source.close();
    }
  });

  it('history that is gone is refused, naming where it now starts', { timeout: 60_000 }, async () => {
    const other = uniqueName('midlog-gone');
    await createEventsTopic(p.log, other, 2);
    await produceLines(p.log, other, lines.slice(0, 400));
    const spec = join(dir.path, 'delete-records.json');
    writeFileSync(spec, JSON.stringify({ version: 1, partitions: [{ topic: other, partition: 0, offset: 50 }] }));
    await kafkaTool('org.apache.kafka.tools.DeleteRecordsCommand', ['--bootstrap-server', testBrokers(), '--offset-json-file', spec]);
    const refused = p.spawn([
      'replay',
      '--version',
      `gone-${suffix}`,
      '--from',
      '0:100,1:100',
      '--topic',
      other,
      '--data-dir',
      dir.path,
      '--metrics',
      metricsFile,
    ]);
    const exit = await Promise.race([refused.exited, pause(40_000).then(() => null)]);
    if (exit === null) refused.child.kill('SIGKILL');
    expect(exit?.code, `not refused: ${refused.output().slice(-1000)}`).toBe(2);
    expect(refused.output()).toContain(
      'partition 0 starts at 100, and its history now starts at offset 50 (the log starts at 50, there is no lake)',
    );
    expect(await readVersionRecord(localState(dir.path), `gone-${suffix}`)).toBeFalsy();
  });
});
