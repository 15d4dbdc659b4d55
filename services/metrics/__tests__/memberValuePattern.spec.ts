/**
 * The rule restated for engines whose JSON functions cannot tell a field's type (fieldSemantics.ts
 * `memberValuePattern`, `memberKindOf`, `NON_STRING_TEXT_STARTS`; the Spark engine reads fields
 * with them): on generated flat events (names written literally or as \u escapes, odd
 * whitespace, members in any order, strings holding quotes, commas, braces and look-alike
 * members), the pattern's capture gives the member's JSON type as JSON.parse sees it, and a
 * number's exact source digits. Runs in `npm test`, without Spark; the Spark differential test
 * (npm run test:spark) checks the whole engine.
 */
import { describe, expect, it } from 'vitest';
import { NON_STRING_TEXT_STARTS, memberKindOf, memberValuePattern } from '../fieldSemantics.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run services/metrics/__tests__/memberValuePattern.spec.ts`;

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = ['k', 'K', 'k2', 'a.b', 'w-x', '_u'];
const NUMBERS = [
  '0',
  '-0',
  '1',
  '1.0',
  '1e2',
  '1E+2',
  '-7.5e-1',
  '123.456e-2',
  '9007199254740993',
  '12345678901234567890123',
  '0.30000000000000004',
];
const STRINGS = ['"1"', '"true"', '""', '"a,\\"k\\":1"', '"{\\"k\\":2}"', '"x y"', '"\\u00e9"', '"Infinity"', '"-3"', '"[1]"', '"tom"'];

/** JSON text of a member name: literally, or with some characters as \u escapes (either case). */
function nameText(r: () => number, name: string): string {
  return `"${[...name].map((ch) => (r() < 0.2 ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`[r() < 0.5 ? 'toLowerCase' : 'toUpperCase']().replace('\\U', '\\u') : ch)).join('')}"`;
}

describe('a member kind and number digits read from the event text (the rule engines without JSON types use)', () => {
  it(`agrees with JSON.parse on generated flat events (seed ${SEED})`, () => {
    const r = seeded(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const patterns = new Map(NAMES.map((n) => [n, new RegExp(memberValuePattern(n))]));
    let checked = 0;
    for (let i = 0; i < 5_000; i++) {
      const values = new Map<string, string>();
      for (const n of NAMES)
        if (r() < 0.6) values.set(n, r() < 0.45 ? pick(NUMBERS) : r() < 0.85 ? pick(STRINGS) : pick(['true', 'false']));
      const ws = () => pick(['', '', ' ', '\t', '\n']);
      const members = [`"id":"e${i}"`, ...[...values].map(([n, v]) => `${ws()}${nameText(r, n)}${ws()}:${ws()}${v}${ws()}`)].sort(
        () => r() - 0.5,
      );
      const line = `{${members.join(',')}}`;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      for (const n of NAMES) {
        const m = patterns.get(n)!.exec(line);
        const capture = m ? m[1]! : '';
        const kind = memberKindOf(capture);
        const v = parsed[n];
        const where = `${n} in ${line}; ${rerun}`;
        expect(kind, where).toBe(v === undefined ? undefined : typeof v === 'string' ? 's' : typeof v === 'boolean' ? 'b' : 'n');
        if (kind === 'n') expect(capture, where).toBe(values.get(n));
        // The shortcut: a string whose decoded text starts otherwise needs no pattern.
        if (typeof v === 'string' && !(NON_STRING_TEXT_STARTS as readonly string[]).includes(v.charAt(0))) expect(kind, where).toBe('s');
        checked++;
      }
    }
    expect(checked).toBe(5_000 * NAMES.length);
  });
});
