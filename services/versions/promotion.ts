/**
 * Promotion: make a job version the default, after the checks of versionStates.ts, or without
 * them when forced (each skipped check is recorded in the pointer). The pointer is read first,
 * with its ETag; the checks are made against it; the new pointer is written only if it is still
 * the one read (defaultVersion.ts). So two promotions at once, from the CLI and any serving
 * process on any host, never both read generation n and both write n + 1: one wins, the other
 * fails with PromotionConflictError and changes nothing. No lock is held, so a promotion killed
 * half-way blocks no one.
 */
import { ConfigError } from '../errors.ts';
import { readDefaultVersionObject, swapDefaultVersion, type DefaultVersion } from './defaultVersion.ts';
import { readVersionRecord } from './versionRecord.ts';
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
  const { state } = request;
  const record = await readVersionRecord(state, request.version);
  if (record?.retiredAt) throw new PromotionRefusedError(request.version, [`it was retired at ${record.retiredAt}`]);
  // The pointer the checks and the swap are made against.
  const seen = await readDefaultVersionObject(state);
  const reasons = await promotionRefusals(request, request.version, seen?.value);
  if (!record) throw new PromotionRefusedError(request.version, reasons);
  if (reasons.length > 0 && !request.force) throw new PromotionRefusedError(request.version, reasons);
  const before = seen?.value.version ?? request.fallbackDefault;
  const pointer = await swapDefaultVersion(state, seen, request.version, request.fallbackDefault, reasons);
  return { pointer, skipped: reasons, changed: before !== request.version };
}
