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

const DAY_MS = 86_400_000;
/** 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the instants toISOString writes with a 4-digit year. */
const FAST_MIN_MS = -62_167_219_200_000;
const FAST_MAX_MS = 253_402_300_799_999;
const TWO_DIGITS = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const THREE_DIGITS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/** `YYYY-MM-DDT` of the last day formatted: the instants of one answer are mostly on one day. */
let lastDay = NaN;
let lastDayPrefix = '';

function dayPrefix(days: number): string {
  if (days === lastDay) return lastDayPrefix;
  // Civil date from days since 1970-01-01 in the proleptic Gregorian calendar (the one
  // toISOString uses), after Howard Hinnant's days_from_civil inverse: 400-year eras of 146,097
  // days, years starting on March 1 so that the leap day is the last day of a year.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthFromMarch + 2) / 5) + 1;
  const month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  lastDayPrefix = `${String(year).padStart(4, '0')}-${TWO_DIGITS[month]!}-${TWO_DIGITS[day]!}T`;
  lastDay = days;
  return lastDayPrefix;
}

/**
 * The same text as `new Date(ms).toISOString()` (that is the reference, and what runs outside
 * years 0000..9999 and for invalid instants, which throw the same RangeError), without a Date
 * object or a call into the runtime per value.
 */
export function formatIsoInstant(ms: number): string {
  // A Date keeps whole milliseconds, truncated toward zero (TimeClip); `+ 0` turns -0 into 0.
  const t = Math.trunc(ms) + 0;
  if (!(t >= FAST_MIN_MS && t <= FAST_MAX_MS)) return new Date(ms).toISOString();
  const days = Math.floor(t / DAY_MS);
  let rest = t - days * DAY_MS;
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1000);
  const milli = rest - second * 1000;
  return `${dayPrefix(days)}${TWO_DIGITS[hour]!}:${TWO_DIGITS[minute]!}:${TWO_DIGITS[second]!}.${THREE_DIGITS[milli]!}Z`;
}

/**
 * Texts of recent instants, direct-mapped: one slot per instant, chosen from its minute (and its
 * offset in the minute), a newer instant replacing an older one in its slot. Window starts and
 * processing times repeat across keys and requests (one day of minute windows is 1,440 values,
 * which map to 1,440 distinct slots), and a lookup is an array read and a compare, where a Map of
 * heap numbers cost a twentieth of a large answer's execution. Bounded by construction.
 */
const SLOT_COUNT = 1 << 14;
const SLOT_MASK = SLOT_COUNT - 1;
const slotInstant = new Float64Array(SLOT_COUNT).fill(NaN); // NaN equals nothing: empty
const slotText: string[] = new Array<string>(SLOT_COUNT).fill('');

export function isoText(ms: number): string {
  const minute = Math.floor(ms / 60_000);
  const slot = (minute ^ Math.imul(ms - minute * 60_000, 0x9e3779b1)) & SLOT_MASK;
  if (slotInstant[slot] === ms) return slotText[slot]!;
  const text = formatIsoInstant(ms);
  slotInstant[slot] = ms;
  slotText[slot] = text;
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
