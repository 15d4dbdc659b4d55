/**
 * Named error types. Each one means exactly one kind of condition, so that the CLI can decide
 * what to print and which exit code to use without inspecting messages (Kafka Streams keeps its
 * errors in one package for the same reason).
 */

/** Bad configuration or flags: the user can fix it; printed as one line, exit code 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * A part of the infrastructure failed (broker unreachable, file unreadable, disk full). The work
 * could not be done; printed as one line, exit code 1. Never used for bad *data*, which goes to
 * the dead-letter topic instead.
 */
export class InfrastructureError extends Error {
  override name = 'InfrastructureError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** An operation that the current state forbids (for example commit outside a transaction). */
export class IllegalStateError extends Error {
  override name = 'IllegalStateError';
}

/** Invariant check in the TigerBeetle style: a broken invariant is a bug, so fail loudly. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
