/**
 * The `Granularity` scalar: a tumbling window size as GraphQL names it. It was an enum of
 * MINUTE, HOUR and DAY; queries written for it keep working unchanged (`granularity: MINUTE` is
 * read from the enum-like literal, `"MINUTE"` from a variable), and any size a metric declares is
 * asked for by its duration: `granularity: "5m"`, `"15m"`, `"6h"`, `"7d"` (`"60m"` is HOUR).
 * Answers name MINUTE, HOUR and DAY as before and other sizes by their duration.
 */
import { GraphQLError, Kind, type ValueNode } from 'graphql/index.js';
import { GRANULARITIES, granularityMs, parseGranularity, type Granularity } from '../../services/metrics/definitions.ts';
import { granularityName } from '../queries.ts';

/** The canonical granularity of an argument's text (MINUTE, minute, 5m, 60m ...), or undefined. */
export function parseGranularityArgument(text: string): Granularity | undefined {
  const lower = text.toLowerCase();
  const parsed = parseGranularity((GRANULARITIES as readonly string[]).includes(lower) ? lower : text);
  return parsed.ok ? parsed.granularity : undefined;
}

function parse(text: unknown): Granularity {
  if (typeof text !== 'string')
    throw new GraphQLError(`Granularity must be MINUTE, HOUR, DAY or a duration such as "5m", got ${JSON.stringify(text)}`);
  const g = parseGranularityArgument(text);
  if (g === undefined) {
    const parsed = parseGranularity(text);
    throw new GraphQLError(`Granularity: ${parsed.ok ? 'unknown' : parsed.error.replace('minute, hour, day', 'MINUTE, HOUR, DAY')}`);
  }
  return g;
}

export const granularityScalar = {
  serialize: (value: unknown): string => {
    if (typeof value !== 'string') throw new GraphQLError(`Granularity must be a string, got ${typeof value}`);
    // Resolvers return the API name already (queries.ts granularityName); a canonical name maps to it.
    const g = parseGranularityArgument(value);
    return g === undefined ? value : granularityName(g);
  },
  parseValue: parse,
  parseLiteral: (node: ValueNode): Granularity => {
    if (node.kind === Kind.ENUM || node.kind === Kind.STRING) return parse(node.value);
    throw new GraphQLError(`Granularity must be MINUTE, HOUR, DAY or a duration string such as "5m"`);
  },
};

/**
 * The largest [from, to) span a query may ask of `g`'s windows: the --max-range-<g> flag for
 * MINUTE, HOUR and DAY; for other sizes, as many windows as the named granularity just below
 * allows (5m: 5 x the minute span; 6h: 6 x the hour span; 7d: 7 x the day span; 30s: half the
 * minute span), so that no size answers more windows than the flags allow.
 */
export function maxRangeMsOf(maxRangeMs: Record<'minute' | 'hour' | 'day', number>, g: Granularity): number {
  if (g === 'minute' || g === 'hour' || g === 'day') return maxRangeMs[g];
  const size = granularityMs(g);
  const below = [...GRANULARITIES].reverse().find((n) => granularityMs(n) <= size) ?? 'minute';
  return Math.floor((maxRangeMs[below] / granularityMs(below)) * size);
}
