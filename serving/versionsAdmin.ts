/**
 * What the admin mutations need beyond the files: retiring a version (its topic and group are
 * deleted through the log serving holds) and making every serving process follow a change of
 * the default version before the mutation returns.
 *
 * One process: following is this process's own poll of the pointer. Several workers
 * (serving/http/cluster.ts): the worker that changed the pointer asks the primary to have every
 * worker poll it, and waits until all have answered: when `promote` returns, no worker answers
 * with the old default any more.
 */
import type { ObjectStore } from '../services/storage/objectStore.ts';
import type { EventLog } from '../services/log/eventLog.ts';
import { retireVersion, type RetireReport } from '../services/versions/retirement.ts';
import type { ServeConfig } from './config.ts';
import type { DefaultVersionFollower } from './views/defaultVersionFollower.ts';

/** What each serving process reported after following the pointer. */
export interface FollowReport {
  pid: number;
  version: string;
  generation: number;
  error: string | null;
}

export interface VersionsAdmin {
  retire(version: string, groupId: string | undefined): Promise<RetireReport>;
  /** Every serving process follows the pointer (and closes retired versions) now; resolves with their reports. */
  propagate(): Promise<FollowReport[]>;
}

/** Has every process of this server follow the pointer now (several workers: through the primary). */
export type Propagator = () => Promise<FollowReport[]>;

export function followHere(defaults: DefaultVersionFollower): Propagator {
  return async () => {
    await defaults.poll();
    return [{ pid: process.pid, version: defaults.current.version, generation: defaults.current.generation, error: defaults.lastError }];
  };
}

export function versionsAdmin(options: { config: ServeConfig; state: ObjectStore; log: EventLog; propagate: Propagator }): VersionsAdmin {
  const { config, state, log } = options;
  return {
    async retire(version, groupId) {
      // The version's runtime, if open, is closed by the propagation that follows (closeRetired).
      return retireVersion({
        log,
        state,
        version,
        groupId: groupId ?? `lk-speed-${version}`,
        fallbackDefault: config.defaultVersion,
      });
    },
    propagate: options.propagate,
  };
}
