/**
 * Exact crash reruns: a crash point's visit is drawn from the seed and the point's name alone,
 * so the same seed gives the same visit for a point whichever other points ran before it (in any
 * order, or none: a rerun runs one point), and the command a failing crash test prints, run as
 * printed, crashes at exactly the same LK_CRASH_AT as the failing run did.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../ingest/generator.ts';
import { CRASH_POINTS, crashVisit, type CrashPoint } from '../crashPoints.ts';
import { crashPlan } from '../../../test/e2e/crashPointScenarios.ts';

const POINTS = Object.keys(CRASH_POINTS) as CrashPoint[];

/** The environment a printed command sets (`VAR=value ... npx vitest run FILE`). */
function envOf(command: string): Record<string, string> {
  const line = command.slice(command.indexOf('): ') + 3);
  return Object.fromEntries([...line.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
}

describe('crash visits', () => {
  it('the same seed gives the same visit for a point, whatever other points ran, in any order', () => {
    const rand = seededRandom(77);
    for (let round = 0; round < 50; round++) {
      const seed = Math.floor(rand() * 2 ** 40);
      const inOrder = new Map(POINTS.map((p) => [p, crashVisit(seed, p, 4)]));
      const shuffled = [...POINTS].sort(() => rand() - 0.5);
      for (const p of shuffled) expect(crashVisit(seed, p, 4), `${p} with seed ${seed}`).toBe(inOrder.get(p));
      // A rerun draws one point only.
      const alone = shuffled[0]!;
      expect(crashPlan({ LK_TEST_SEED: String(seed), LK_TEST_CRASH_POINT: alone }).visit(alone, 4)).toBe(inOrder.get(alone));
    }
  });

  it('uses every visit, and depends on the seed', () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) seen.add(crashVisit(seed, 'speed.checkpoint.rows-sent', 3));
    expect([...seen].sort()).toEqual([1, 2, 3]);
    expect(crashVisit(5, 'lake.roll.committed', 1)).toBe(1);
  });

  it('the printed rerun command replays exactly the same crash', () => {
    for (const seed of [undefined, '1', '424242', '9007199254740991']) {
      const run = crashPlan(seed === undefined ? {} : { LK_TEST_SEED: seed });
      for (const point of POINTS) {
        const command = run.rerun(point, 3);
        const again = crashPlan(envOf(command));
        expect(again.only, command).toBe(point);
        expect(again.seed).toBe(run.seed);
        expect(again.visit(point, 3), command).toBe(run.visit(point, 3));
        expect(command).toContain(`LK_CRASH_AT=${point}@${run.visit(point, 3)}`);
        expect(command).toMatch(/npx vitest run test\/e2e\/crashPoints\.exactness\.spec\.ts$/);
      }
    }
  });
});
