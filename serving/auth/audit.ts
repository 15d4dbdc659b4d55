/**
 * Audit lines: every promotion, rollback and retirement asked of serving, done, refused or
 * forbidden, as one structured log line with `audit: true` (so that a log pipeline can route them
 * apart): who (name, role, how recognised), when, the action, from which version to which, and
 * the outcome with its reason.
 */
import type { Logger } from '../../services/observability/logger.ts';
import type { Principal } from './roles.ts';

export type AuditAction = 'promote' | 'rollback' | 'retire';
export type AuditOutcome = 'done' | 'refused' | 'forbidden';

export interface AuditEntry {
  action: AuditAction;
  who: Principal;
  /** The default version before (promote, rollback), or the version retired. */
  from: string | null;
  /** The default version after (promote, rollback); null for a retirement. */
  to: string | null;
  outcome: AuditOutcome;
  reason?: string;
  /** Checks a forced promotion skipped. */
  forced?: string[];
  /** Promotion generation written. */
  promotion?: number;
  /** What a retirement deleted. */
  deleted?: string[];
}

/** Audit lines are written whatever the log level (LK_LOG_LEVEL=warn keeps them). */
const auditLoggers = new WeakMap<Logger, Logger>();

function auditLogger(logger: Logger): Logger {
  let child = auditLoggers.get(logger);
  if (!child) {
    child = logger.child({ audit: true }, { level: 'info' });
    auditLoggers.set(logger, child);
  }
  return child;
}

export function audit(logger: Logger, entry: AuditEntry, at = new Date()): void {
  const { who, ...rest } = entry;
  auditLogger(logger).info(
    { at: at.toISOString(), who: { name: who.name, role: who.role, via: who.via }, ...rest },
    `audit: ${who.name} (${who.role}) ${entry.action} ${entry.from ?? '-'} -> ${entry.to ?? '-'}: ${entry.outcome}`,
  );
}
