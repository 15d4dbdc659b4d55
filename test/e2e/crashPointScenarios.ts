/**
 * Crash points visited by specs other than crashPoints.exactness.spec.ts, so that its coverage
 * test ("every crash point has a scenario") knows where each one is exercised.
 */
import { crashVisit, type CrashPoint } from '../../services/faults/crashPoints.ts';

/** test/e2e/replayAndPromote.spec.ts: `lk promote` killed at each step, serving all-old or all-new. */
export const PROMOTION_POINTS: CrashPoint[] = ['versions.promote.before-swap', 'versions.promote.swapped'];

/** test/e2e/replayFromLake.spec.ts: a lake replay killed mid-lake and at the hand-over, restarted, exact. */
export const LAKE_REPLAY_POINTS: CrashPoint[] = ['replay.lake.checkpointed', 'replay.lake.handed-over'];

/**
 * The crash-point test's plan, from its environment: the seed, the one point a rerun names, the
 * visit at which each point crashes (drawn from the seed and the point's name alone:
 * services/faults/crashPoints.ts crashVisit), and the command a failure prints. The same seed
 * gives the same visit for a point whatever other points ran, so the command replays exactly the
 * same crash (services/faults/__tests__/crashVisit.spec.ts shows it).
 */
export interface CrashPlan {
  seed: number;
  /** The one point to run (a rerun), else every point. */
  only: string | undefined;
  /** The visit (1..choices) at which `point` crashes. */
  visit(point: CrashPoint, choices: number): number;
  /** The one command that replays `point`'s crash exactly, and what it crashes at. */
  rerun(point: CrashPoint, choices: number): string;
}

export const CRASH_POINTS_SPEC = 'test/e2e/crashPoints.exactness.spec.ts';
export const DEFAULT_CRASH_SEED = 424242;

export function crashPlan(env: Record<string, string | undefined>, spec = CRASH_POINTS_SPEC): CrashPlan {
  const seed = Number(env.LK_TEST_SEED ?? DEFAULT_CRASH_SEED);
  const visit = (point: CrashPoint, choices: number) => crashVisit(seed, point, choices);
  return {
    seed,
    only: env.LK_TEST_CRASH_POINT,
    visit,
    rerun: (point, choices) =>
      `rerun (crashes at LK_CRASH_AT=${point}@${visit(point, choices)}): LK_TEST_SEED=${seed} LK_TEST_CRASH_POINT=${point} npx vitest run ${spec}`,
  };
}

/** batch/__tests__/lakeMigration.spec.ts: `lk batch migrate-lake` killed after its commit, run again, complete. */
export const LAKE_MIGRATION_POINTS: CrashPoint[] = ['lake.migration.converted'];
