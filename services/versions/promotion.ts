/**
 * Promotion: make a job version the default, after the checks of versionStates.ts, or without
 * them when forced (each skipped check is recorded in the pointer). One promotion at a time:
 * `<data-dir>/versions/promote.lock` serialises the CLI and every serving process, so that two
 * promotions never both read generation n and both write n + 1.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { acquireLock, releaseLock } from '../storage/fileLock.ts';
import { currentDefaultVersion, writeDefaultVersion, type DefaultVersion } from './defaultVersion.ts';
import { readVersionRecord, versionsRoot } from './versionRecord.ts';
import { promotionRefusals, type VersionsInput } from './versionStates.ts';

export class PromotionRefusedError extends ConfigError {
  override name = 'PromotionRefusedError';
  constructor(
    readonly version: string,
    readonly reasons: string[],
  ) {
    super(
      `cannot promote "${version}": ${reasons.join('; ')}. Wait for it to catch up, or promote with --force (force: true) to skip the checks`,
    );
  }
}

export interface PromoteRequest extends VersionsInput {
  version: string;
  force?: boolean;
}

export interface PromoteResult {
  pointer: DefaultVersion;
  /** The checks a forced promotion skipped (empty when none failed). */
  skipped: string[];
  /** False when the version already was the default. */
  changed: boolean;
}

export async function promoteVersion(request: PromoteRequest): Promise<PromoteResult> {
  const record = readVersionRecord(request.dataDir, request.version);
  if (record?.retiredAt) throw new PromotionRefusedError(request.version, [`it was retired at ${record.retiredAt}`]);
  mkdirSync(versionsRoot(request.dataDir), { recursive: true });
  const lock = join(versionsRoot(request.dataDir), 'promote.lock');
  await acquireLock(lock, 10_000);
  try {
    const reasons = promotionRefusals(request, request.version);
    if (!record) throw new PromotionRefusedError(request.version, reasons);
    if (reasons.length > 0 && !request.force) throw new PromotionRefusedError(request.version, reasons);
    const before = currentDefaultVersion(request.dataDir, request.fallbackDefault);
    const pointer = writeDefaultVersion(request.dataDir, request.version, request.fallbackDefault, reasons);
    return { pointer, skipped: reasons, changed: before !== request.version };
  } finally {
    releaseLock(lock);
  }
}
