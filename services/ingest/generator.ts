/**
 * Deterministic generator of ad-engagement events (impression, click, conversion), seeded so
 * that a test or a benchmark run replays exactly. Shapes what real ad pipelines see:
 * - a funnel: many impressions, fewer clicks, few conversions; cost on clicks and conversions;
 * - exact duplicates (same id and payload: at-least-once redelivery), emitted shortly after the
 *   original;
 * - out-of-order events (event time a little behind the stream) and late events (far behind,
 *   beyond typical allowed lateness).
 */

export interface GeneratorOptions {
  seed: number;
  /** Number of distinct events (duplicates come on top). */
  count: number;
  /** Event time of the first event (epoch ms). */
  startTime: number;
  /** Event-time rate: how many events per second of event time. */
  eventsPerSecond: number;
  /** Share of events that are followed by an exact duplicate (0..1). */
  duplicateRate: number;
  /** Share of events whose event time is shifted back by up to `outOfOrderMs`. */
  outOfOrderRate: number;
  outOfOrderMs: number;
  /** Share of events whose event time is shifted back by `lateMinMs`..`lateMaxMs` (very late). */
  lateRate: number;
  lateMinMs: number;
  lateMaxMs: number;
  campaigns: number;
  adsPerCampaign: number;
  users: number;
}

export const DEFAULT_GENERATOR_OPTIONS: GeneratorOptions = {
  seed: 42,
  count: 10_000,
  startTime: Date.UTC(2026, 0, 1),
  eventsPerSecond: 1000,
  duplicateRate: 0.05,
  outOfOrderRate: 0.1,
  outOfOrderMs: 5_000,
  lateRate: 0.01,
  lateMinMs: 2 * 3_600_000,
  lateMaxMs: 6 * 3_600_000,
  campaigns: 20,
  adsPerCampaign: 10,
  users: 50_000,
};

export interface GeneratedEvent {
  id: string;
  type: 'impression' | 'click' | 'conversion';
  ts: string;
  campaign_id: string;
  ad_id: string;
  user_id: string;
  cost?: number;
}

/** mulberry32: small, fast, good enough for test data, and identical on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Yields JSON lines (one event each, duplicates included) in emission order. `total` events
 * are distinct; each duplicate repeats the exact line of an earlier event a few positions later.
 */
export function* generateEventLines(partial: Partial<GeneratorOptions> = {}): Generator<string> {
  const o = { ...DEFAULT_GENERATOR_OPTIONS, ...partial };
  const rand = seededRandom(o.seed);
  const pendingDuplicates: { at: number; line: string }[] = [];
  const step = 1000 / o.eventsPerSecond;
  let emitted = 0;
  for (let i = 0; i < o.count; i++) {
    let ts = o.startTime + Math.floor(i * step);
    const r = rand();
    if (r < o.lateRate) ts -= o.lateMinMs + Math.floor(rand() * (o.lateMaxMs - o.lateMinMs));
    else if (r < o.lateRate + o.outOfOrderRate) ts -= Math.floor(rand() * o.outOfOrderMs);
    const kind = rand();
    const type: GeneratedEvent['type'] = kind < 0.85 ? 'impression' : kind < 0.98 ? 'click' : 'conversion';
    const campaign = Math.floor(rand() ** 2 * o.campaigns); // skewed: some campaigns are hot
    const ad = Math.floor(rand() * o.adsPerCampaign);
    const event: GeneratedEvent = {
      id: `e-${o.seed}-${i}`,
      type,
      ts: new Date(ts).toISOString(),
      campaign_id: `c${campaign}`,
      ad_id: `c${campaign}-a${ad}`,
      user_id: `u${Math.floor(rand() * o.users)}`,
    };
    if (type === 'click') event.cost = Math.round(rand() * 200) / 100;
    if (type === 'conversion') event.cost = Math.round(rand() * 5000) / 100;
    const line = JSON.stringify(event);
    const duplicate = rand() < o.duplicateRate;
    yield line;
    emitted++;
    if (duplicate) pendingDuplicates.push({ at: emitted + 1 + Math.floor(rand() * 50), line });
    while (pendingDuplicates.length > 0 && pendingDuplicates[0]!.at <= emitted) {
      yield pendingDuplicates.shift()!.line;
      emitted++;
    }
  }
  for (const d of pendingDuplicates) yield d.line;
}
