/** The DateTime scalar: ISO-8601 with an explicit timezone in, UTC ISO-8601 out; epoch ms inside. */
import { GraphQLError, Kind, type ValueNode } from 'graphql/index.js';

const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/;

function invalid(got: unknown): GraphQLError {
  return new GraphQLError(`DateTime must be an ISO-8601 date-time with a timezone, e.g. 2026-01-01T00:00:00Z; got ${JSON.stringify(got)}`, {
    extensions: { code: 'BAD_USER_INPUT' },
  });
}

export function parseDateTime(value: unknown): number {
  if (typeof value !== 'string') throw invalid(value);
  const m = ISO_DATE_TIME.exec(value);
  if (!m) throw invalid(value);
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // Date.parse rolls 2026-02-30 over to March 2: refuse dates that do not exist instead.
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCMonth() !== month - 1 || probe.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) throw invalid(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw invalid(value);
  return ms;
}

/**
 * Window starts and processing times repeat across keys and requests (one day of minute windows
 * is 1,440 values), and toISOString() was a fifth of a large answer's execution time: cache the
 * text of recent instants (bounded: cleared when full).
 */
const ISO_CACHE_LIMIT = 200_000;
const isoCache = new Map<number, string>();

function isoText(ms: number): string {
  let text = isoCache.get(ms);
  if (text === undefined) {
    text = new Date(ms).toISOString();
    if (isoCache.size >= ISO_CACHE_LIMIT) isoCache.clear();
    isoCache.set(ms, text);
  }
  return text;
}

export const dateTimeScalar = {
  serialize(value: unknown): string {
    if (typeof value === 'number') return isoText(value);
    if (value instanceof Date) return value.toISOString();
    throw new GraphQLError(`cannot serialize ${typeof value} as DateTime`);
  },
  parseValue: parseDateTime,
  parseLiteral(node: ValueNode): number {
    if (node.kind !== Kind.STRING) throw invalid(node.kind === Kind.INT || node.kind === Kind.FLOAT ? node.value : node.kind);
    return parseDateTime(node.value);
  },
};
