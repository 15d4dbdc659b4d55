/**
 * Crash points visited by specs other than crashPoints.exactness.spec.ts, so that its coverage
 * test ("every crash point has a scenario") knows where each one is exercised.
 */
import type { CrashPoint } from '../../services/faults/crashPoints.ts';

/** test/e2e/replayAndPromote.spec.ts: `lk promote` killed at each step, serving all-old or all-new. */
export const PROMOTION_POINTS: CrashPoint[] = ['versions.promote.before-rename', 'versions.promote.renamed'];

/** test/e2e/replayFromLake.spec.ts: a lake replay killed mid-lake and at the hand-over, restarted, exact. */
export const LAKE_REPLAY_POINTS: CrashPoint[] = ['replay.lake.checkpointed', 'replay.lake.handed-over'];
