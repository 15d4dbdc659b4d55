/**
 * Retiring a job version (`lk versions retire <version>`): its speed view topic, checkpoints,
 * consumer group, status files and batch views are deleted, on explicit request only. The record
 * stays, marked retired, so that `lk versions` still lists it and no layer starts it again by
 * mistake (versionRecord.ts refuses a retired version).
 *
 * Refused for the default version (promote another one first) and while a speed instance of the
 * version still reports (stop it first: a running job would recreate what is deleted). The record
 * is marked retired before anything is deleted, so a retirement interrupted half-way leaves a
 * retired version with leftovers, and running the command again deletes the rest.
 */
import { rmSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import type { EventLog } from '../log/eventLog.ts';
import { listAll, type ObjectStore } from '../storage/objectStore.ts';
import { readSpeedStatuses } from '../status/speedStatus.ts';
import { batchViewsPrefix } from '../views/batchSnapshots.ts';
import { speedViewTopic } from '../views/viewRow.ts';
import { checkpointsPrefix } from '../config/dataDir.ts';
import { currentDefaultVersion } from './defaultVersion.ts';
import { markRetired, readVersionRecord, versionsLocation } from './versionRecord.ts';
import { STATUS_STALE_MS } from './versionStates.ts';

export interface RetireRequest {
  log: EventLog;
  /** The shared state (`--state-uri`). */
  state: ObjectStore;
  version: string;
  /** The speed job's consumer group (lk-speed-<version> unless it ran with --group). */
  groupId: string;
  /** The default version when none was ever promoted (serving's --version). */
  fallbackDefault: string;
  now?: number;
}

export interface RetireReport {
  version: string;
  retiredAt: string;
  deleted: string[];
}

export async function retireVersion(r: RetireRequest): Promise<RetireReport> {
  const { log, state, version } = r;
  const record = await readVersionRecord(state, version);
  if (!record) throw new ConfigError(`no job version "${version}" in ${versionsLocation(state)}`);
  const live = await currentDefaultVersion(state, r.fallbackDefault);
  if (live === version) {
    throw new ConfigError(`"${version}" is the default version: promote another version first (lk promote <version>), then retire it`);
  }
  const now = r.now ?? Date.now();
  const running = (await readSpeedStatuses(state, version)).filter(
    (s) => s.status && s.status.ready && now - s.status.updatedAt <= STATUS_STALE_MS,
  );
  if (running.length > 0) {
    const ids = running.map((s) => `${s.status!.instanceId} (pid ${s.status!.pid})`).join(', ');
    throw new ConfigError(`speed instances of "${version}" are still running: ${ids}; stop them first (SIGTERM), then retire it`);
  }
  const retired = record.retiredAt === null ? await markRetired(state, version) : record;
  const deleted: string[] = [];
  const topic = speedViewTopic(version);
  if ((await log.listTopics()).includes(topic)) {
    await log.deleteTopics([topic]);
    deleted.push(`topic ${topic}`);
  }
  await log.deleteGroups([r.groupId]);
  deleted.push(`consumer group ${r.groupId}`);
  for (const [what, prefix] of [
    ['checkpoints', checkpointsPrefix(version)],
    ['batch views', batchViewsPrefix(version)],
  ] as const) {
    const objects = await listAll(state, `${prefix}/`);
    if (objects.length > 0) {
      for (const o of objects) await state.delete(o.key);
      deleted.push(`${what} ${state.location}/${prefix} (${objects.length} objects)`);
    }
    // On a local folder, its empty directories too (nothing writes under a retired version).
    const folder = state.localPath(prefix);
    if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
  }
  // Only files that say they are this version's ("v2-" also begins the files of "v2-b").
  for (const s of await readSpeedStatuses(state, version, { all: true })) if (s.status?.version === version) await state.delete(s.key);
  return { version, retiredAt: retired.retiredAt!, deleted };
}
