/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * Numbers as keys, distinct values and filter values, end to end on the real broker: events
 * whose key and distinct fields are JSON numbers in edge forms (1e-7, 0.000025, 1E2, -0, integers
 * beyond 2^53 that differ by one, beyond 2^64, 1e21) go through `lk produce`, the real `lk speed`
 * and `lk batch run` into serving over HTTP. The key -> count map the speed view gives alone must
 * equal the map after the batch run (before this was fixed, one event counted under two keys
 * after a batch run), both must equal the oracle, and the counts must add up to the events
 * produced. The expected key texts are written out by hand (docs/metrics.md), the counts come
 * from grouping the produced events by their exact decimal value (BigInt arithmetic).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { currentBatchRun } from '../sharedState.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { seededRandom } from '../../services/ingest/generator.ts';
import { tempDir, uniqueName } from '../helpers.ts';
import { Pipeline, killAll, startServing, testVersion, type LkProcess, type Serving } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 77);
const EVENTS = 1500;

/** [source text, the key docs/metrics.md says it has]: equal values share a key, distinct ones never do. */
const NUMBERS: [string, string][] = [
  ['9007199254740993', '9007199254740993'],
  ['9007199254740992', '9007199254740992'],
  ['9007199254740993.0', '9007199254740993'],
  ['1e-7', '1e-7'],
  ['1E-7', '1e-7'],
  ['0.0000001', '1e-7'],
  ['0.000025', '0.000025'],
  ['2.5e-05', '0.000025'],
  ['10000000000000000', '10000000000000000'],
  ['1e+16', '10000000000000000'],
  ['-0', '0'],
  ['0', '0'],
  ['1.50', '1.5'],
  ['1E2', '100'],
  ['100.0', '100'],
  ['123456789012345678901234567890', '1.2345678901234567890123456789e+29'],
  ['123456789012345678901234567891', '1.23456789012345678901234567891e+29'],
  ['18446744073709551616', '18446744073709551616'],
  ['1e21', '1e+21'],
  ['-7.25E+2', '-725'],
  ['0.1', '0.1'],
];

/** Values for the distinct field: two users per pair that a double would merge. */
const USERS = [
  '9007199254740993',
  '9007199254740992',
  '12345678901234567890',
  '12345678901234567891',
  '7',
  '7.0',
  '"7"',
  '1e-7',
  '0.0000001',
];
/** Their texts: equal values are one user ("7" the string and 7 the number share the text 7). */
const USER_TEXTS = new Set(['9007199254740993', '9007199254740992', '12345678901234567890', '12345678901234567891', '7', '1e-7']);

const METRICS = `version: 1
metrics:
  - name: by_number
    filter: { type: reading }
    key: n
    value: v
    distinct: u
    granularities: [minute, hour]
    allowedLateness: 1d
  - name: coded
    filter: { code: [9007199254740993, 1e-7, 100, "100"] }
    key: code
    granularities: [hour]
    allowedLateness: 1d
`;

/** code values: [source, matches the filter, key]. */
const CODES: [string, boolean, string][] = [
  ['9007199254740993', true, '9007199254740993'],
  ['9007199254740992', false, ''],
  ['1e-7', true, '1e-7'],
  ['0.0000001', true, '1e-7'],
  ['100', true, '100'],
  ['1e2', true, '100'],
  ['"100"', true, '100'],
  ['101', false, ''],
  ['"1e-7"', false, ''],
];

const VALUES = ['1.5', '-0', '1e2', '0.1', '1e400', '3', '"4"'];

describe('numeric keys, distinct values and filters agree in both engines, end to end', () => {
  const dir = tempDir('lk-e2e-numbers-');
  const topic = uniqueName('numbers');
  const p = new Pipeline(dir.path, join(dir.path, 'metrics.yaml'), topic, testVersion('num'));
  let serving: Serving;
  let speed: LkProcess | undefined;
  const start = Math.floor((Date.now() - 2 * 3_600_000) / 3_600_000) * 3_600_000;
  const from = new Date(start - 3_600_000).toISOString();
  const to = new Date(start + 4 * 3_600_000).toISOString();

  // The events, as text (a JSON writer would not keep the numbers' source forms), with duplicates.
  const rand = seededRandom(SEED);
  const lines: string[] = [];
  const unique: { n: number; code: number; v: number; u: number }[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const e = {
      n: Math.floor(rand() * NUMBERS.length),
      code: Math.floor(rand() * CODES.length),
      v: Math.floor(rand() * VALUES.length),
      u: Math.floor(rand() * USERS.length),
    };
    unique.push(e);
    const ts = new Date(start + Math.floor((i / EVENTS) * 2 * 3_600_000)).toISOString();
    const line = `{"id":"n-${SEED}-${i}","type":"reading","ts":"${ts}","n":${NUMBERS[e.n]![0]},"code":${CODES[e.code]![0]},"v":${VALUES[e.v]},"u":${USERS[e.u]}}`;
    lines.push(line);
    if (rand() < 0.1) lines.push(line); // an exact duplicate, as an at-least-once producer sends
  }

  /** The oracle: per expected key, the unique events whose n has that exact value. */
  function expectedByNumber(): Map<string, number> {
    const out = new Map<string, number>();
    for (const e of unique) {
      const key = NUMBERS[e.n]![1];
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  }

  async function byNumberKeys(): Promise<{ map: Map<string, number>; total: any; sources: Set<string> }> {
    const d = await gqlData<any>(
      serving.url,
      `{ top: topKeys(metric: "by_number", granularity: HOUR, from: "${from}", to: "${to}", limit: 1000) { key count }
         total(metric: "by_number", from: "${from}", to: "${to}", granularity: HOUR) { count sum distinct }
         coded: topKeys(metric: "coded", granularity: HOUR, from: "${from}", to: "${to}", limit: 100) { key count }
         series(metric: "by_number", key: "9007199254740993", granularity: HOUR, from: "${from}", to: "${to}") { source provisional } }`,
    );
    return {
      map: new Map((d.top as any[]).map((k) => [k.key, k.count])),
      total: { ...d.total, coded: new Map((d.coded as any[]).map((k) => [k.key, k.count])) },
      sources: new Set((d.series as any[]).map((w) => `${w.source}${w.provisional ? ' provisional' : ''}`)),
    };
  }

  beforeAll(async () => {
    writeFileSync(p.metricsFile, METRICS);
    writeFileSync(join(dir.path, 'events.jsonl'), lines.join('\n') + '\n');
    await p.log.createTopics(eventTopicSpecs(topic, 3));
    serving = await startServing(p);
  });

  afterAll(async () => {
    killAll();
    await serving?.close();
    await p.close();
    dir.remove();
  });

  let speedOnly: Awaited<ReturnType<typeof byNumberKeys>>;

  it('the speed view alone: one key per exact value, counts equal to the oracle', async () => {
    speed = p.startSpeed();
    await p.run(['produce', '--topic', topic, '--file', join(dir.path, 'events.jsonl'), ...p.common()]);
    await p.speedCaughtUp();
    await p.servingCaughtUp(serving.url);
    speedOnly = await byNumberKeys();
    expect(Object.fromEntries(speedOnly.map)).toEqual(Object.fromEntries(expectedByNumber()));
    expect([...speedOnly.map.values()].reduce((a, b) => a + b, 0)).toBe(EVENTS);
    expect(speedOnly.sources).toEqual(new Set(['SPEED']));
  });

  it('after lk batch run: the same map, the same totals, every window from the batch view', async () => {
    await p.stop(speed);
    await p.batchRun();
    const run = (await currentBatchRun(dir.path, p.version))!;
    expect(run.manifest.uniqueEvents).toBe(EVENTS);
    await p.batchInstalled(serving.url, run.manifest.runId);
    const afterBatch = await byNumberKeys();
    expect(Object.fromEntries(afterBatch.map)).toEqual(Object.fromEntries(speedOnly.map));
    expect(afterBatch.total.count).toBe(EVENTS);
    expect(afterBatch.total.count).toBe(speedOnly.total.count);
    expect(afterBatch.sources).toEqual(new Set(['BATCH']));

    // Distinct values: the same registers in both engines, and what the oracle's users give.
    const oracle = new HyperLogLog();
    for (const e of unique)
      oracle.add(USERS[e.u]!.startsWith('"') ? JSON.parse(USERS[e.u]!) : [...USER_TEXTS].find((t) => sameNumber(t, USERS[e.u]!))!);
    expect(afterBatch.total.distinct).toBe(oracle.estimate());
    expect(speedOnly.total.distinct).toBe(oracle.estimate());

    // Sums: only finite numbers count (1e400 has no double; "4" is a string), -0 as 0.
    const sum = unique.reduce((a, e) => a + (VALUES[e.v] === '1e400' || VALUES[e.v]!.startsWith('"') ? 0 : Number(VALUES[e.v])), 0);
    expect(afterBatch.total.sum).toBeCloseTo(sum, 6);
    expect(speedOnly.total.sum).toBeCloseTo(sum, 6);

    // Numeric filter values match by exact value and type; "1e-7" the string does not.
    const coded = new Map<string, number>();
    for (const e of unique) if (CODES[e.code]![1]) coded.set(CODES[e.code]![2], (coded.get(CODES[e.code]![2]) ?? 0) + 1);
    expect(Object.fromEntries(afterBatch.total.coded)).toEqual(Object.fromEntries(coded));
    expect(Object.fromEntries(speedOnly.total.coded)).toEqual(Object.fromEntries(coded));
  });
});

/** Whether two JSON number texts have the same exact value (BigInt digits and exponent). */
function sameNumber(a: string, b: string): boolean {
  const exact = (t: string) => {
    const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(t);
    if (!m) return t;
    let n = BigInt(m[2]! + (m[3] ?? ''));
    if (n === 0n) return '0';
    let e = BigInt(m[4] ?? '0') - BigInt((m[3] ?? '').length);
    while (n % 10n === 0n) {
      n /= 10n;
      e += 1n;
    }
    return `${m[1]}${n}e${e}`;
  };
  return exact(a) === exact(b);
}
