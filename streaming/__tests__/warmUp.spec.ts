/**
 * The warm-up of a version that starts mid-log, on PartitionState directly (pure, no broker),
 * over generated records: ids reused inside and beyond the dedup horizon with other event times,
 * duplicates, out-of-order and late events, over four days. For seeded starts s and cuts (the
 * floor as the warm-up computes it, lower ones, none), a state warmed up (records below the cut
 * narrow: `applyNarrow`; the others applied; nothing captured before s) must equal, from s on, a
 * state that applied every record from offset 0: the same open windows with the same aggregates
 * at s and at the end, the same largest event time, the same live dedup entries, the same
 * verdicts after s. docs/merge-rule.md, "Hard case 3", is the argument.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import { TEST_METRICS_YAML } from './support/oracle.ts';
import { PartitionState } from '../state/partitionState.ts';
import { fingerprintId } from '../state/idFingerprint.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1617);
const DEFS = [...parseMetricDefinitions(TEST_METRICS_YAML, 'test.yaml').metrics];
const SEMANTICS = { outOfOrdernessMs: 2000, dedupHorizonMs: 86_400_000 + 3_600_000 };
const HOUR = 3_600_000;

interface Rec {
  id: string;
  ts: number;
  value: Buffer;
}

function records(seed: number): Rec[] {
  const rand = seededRandom(seed);
  const out: Rec[] = [];
  let now = Date.UTC(2026, 0, 5, 7, 13);
  for (let i = 0; i < 4000; i++) {
    now += Math.floor(rand() * 170_000);
    const r = rand();
    // Ids from a pool (reused at any distance), some fresh; times late, out of order or ahead.
    const id = r < 0.5 ? `u-${Math.floor(rand() * 600)}` : `e-${i}`;
    const ts = r < 0.6 ? now : r < 0.75 ? now - Math.floor(rand() * 3 * HOUR) : r < 0.8 ? now + Math.floor(rand() * HOUR) : now - 1000;
    const type = rand() < 0.6 ? 'impression' : rand() < 0.8 ? 'click' : 'conversion';
    const ev = {
      id,
      type,
      ts: new Date(ts).toISOString(),
      campaign_id: `c${Math.floor(rand() * 3)}`,
      ad_id: `a${Math.floor(rand() * 4)}`,
      user_id: `u${Math.floor(rand() * 50)}`,
      cost: Math.round(rand() * 300) / 100,
    };
    out.push({ id, ts, value: Buffer.from(JSON.stringify(ev)) });
  }
  return out;
}

const state = () => new PartitionState(0, DEFS, SEMANTICS, { homePartitions: 1 });
const apply = (s: PartitionState, r: Rec, offset: number) => s.applyValue(offset, 1_000 + offset, r.value, 0, r.value.length);

function windows(s: PartitionState): string[] {
  // The open windows (count 0: a closed window held until it expires, which a full replay holds
  // because it published it, and a warm-up does not: it published none).
  return s
    .allWindows()
    .filter((w) => w.count > 0)
    .map((w) => JSON.stringify({ ...w, sketch: w.sketch ? Buffer.from(w.sketch).toString('hex') : null }))
    .sort();
}

function liveEntries(s: PartitionState): string[] {
  const e = s.dedup.entries();
  const limit = s.watermark() - SEMANTICS.dedupHorizonMs;
  const out: string[] = [];
  for (let i = 0; i < e.length; i++) if (e.ts[i]! >= limit) out.push(`${[...e.fingerprints.subarray(4 * i, 4 * i + 4)]}@${e.ts[i]}`);
  return out.sort();
}

describe(`the warm-up's state equals a full replay's from the start on (seed ${SEED})`, () => {
  const recs = records(SEED);
  const rand = seededRandom(SEED + 7);
  const starts = [137, 1000, 2222, 3999, ...Array.from({ length: 4 }, () => 100 + Math.floor(rand() * 3800))];

  it.each(starts)('start %i', (start) => {
    const full = state();
    recs.slice(0, start).forEach((r, o) => apply(full, r, o));
    const atStart = { windows: windows(full), maxTs: full.maxTs, entries: liveEntries(full), counters: structuredClone(full.counters) };
    // The floor as warmUpSource.ts computes it: the largest first-copy time minus ooo and horizon.
    const firsts = new Map<string, number>();
    recs.slice(0, start).forEach((r) => firsts.has(r.id) || firsts.set(r.id, r.ts));
    const floor = Math.max(...firsts.values()) - SEMANTICS.outOfOrdernessMs - SEMANTICS.dedupHorizonMs;
    recs.slice(start).forEach((r, i) => apply(full, r, start + i));
    for (const cut of [floor, floor - 6 * HOUR, -Infinity]) {
      const warm = state();
      warm.beginWarmUp(start);
      const fp = new Int32Array(4);
      let narrow = 0;
      recs.slice(0, start).forEach((r, o) => {
        if (r.ts >= cut) return apply(warm, r, o);
        fingerprintId(r.id, fp);
        warm.applyNarrow(o, 1_000 + o, r.ts, fp);
        narrow++;
      });
      const rest = `start ${start}, cut ${cut} (${narrow} narrow)\nrerun: LK_TEST_SEED=${SEED} npx vitest run streaming/__tests__/warmUp.spec.ts`;
      expect(warm.pendingRows, `nothing to publish while warming: ${rest}`).toBe(0);
      warm.advanceTo(start);
      expect(warm.warmUntil, rest).toBeNull();
      expect(windows(warm), `open windows at the start: ${rest}`).toEqual(atStart.windows);
      expect(warm.maxTs, rest).toBe(atStart.maxTs);
      expect(liveEntries(warm), `live dedup entries at the start: ${rest}`).toEqual(atStart.entries);
      // Every open window is published at the first capture, stamped where the state stands.
      expect(warm.pendingRows, rest).toBe(atStart.windows.length);
      recs.slice(start).forEach((r, i) => apply(warm, r, start + i));
      expect(windows(warm), `open windows at the end: ${rest}`).toEqual(windows(full));
      expect(liveEntries(warm), rest).toEqual(liveEntries(full));
      expect(warm.counters.duplicates, rest).toBe(full.counters.duplicates - atStart.counters.duplicates);
      const late = (c: typeof full.counters) => Object.values(c.droppedLate).reduce((a, b) => a + b, 0);
      expect(late(warm.counters), rest).toBe(late(full.counters) - late(atStart.counters));
      const rows = warm.captureChanges().rows;
      expect(rows.every((row) => row.throughOffset >= start)).toBe(true);
    }
  });
});
