/**
 * DateTime answers (serving/graphql/dateTime.ts) are exactly `Date.prototype.toISOString`: the
 * hand-written formatter and the direct-mapped cache in front of it, on edge instants (epoch,
 * negative and fractional milliseconds, -0, leap days, year 0 and 9999 and just past them, the
 * limits of Date) and on a sweep of random instants, and the cache after collisions.
 */
import { describe, expect, it } from 'vitest';
import { dateTimeScalar, formatIsoInstant, isoText } from '../graphql/dateTime.ts';
import { seededRandom } from '../../services/ingest/generator.ts';

const reference = (ms: number): string => new Date(ms).toISOString();

const EDGES = [
  0,
  -0,
  1,
  -1,
  0.5,
  1.999,
  -1.5,
  -0.4,
  999,
  1000,
  59_999,
  60_000,
  86_399_999,
  86_400_000,
  -86_400_000,
  -86_400_001,
  Date.UTC(2026, 0, 1),
  Date.UTC(2024, 1, 29, 23, 59, 59, 999),
  Date.UTC(2000, 1, 29),
  Date.UTC(1900, 1, 28, 12),
  Date.UTC(1900, 2, 1),
  Date.UTC(2100, 2, 1) - 1,
  Date.UTC(1969, 11, 31, 23, 59, 59, 999),
  Date.UTC(1600, 1, 29),
  -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
  -62_162_035_200_000, // 0000-02-29: year 0 is a leap year
  -62_167_219_200_001, // -000001-12-31T23:59:59.999Z: six-digit year, toISOString's own path
  253_402_300_799_999, // 9999-12-31T23:59:59.999Z
  253_402_300_800_000, // +010000-01-01T00:00:00.000Z
  8.64e15,
  -8.64e15,
];

describe('DateTime text equals toISOString', () => {
  it('on edge instants', () => {
    for (const ms of EDGES) {
      expect(formatIsoInstant(ms), String(ms)).toBe(reference(ms));
      expect(isoText(ms), String(ms)).toBe(reference(ms));
      expect(isoText(ms), `${ms} (cached)`).toBe(reference(ms));
    }
  });

  it('throws the same RangeError for instants a Date cannot hold', () => {
    for (const ms of [NaN, Infinity, -Infinity, 8.64e15 + 1, -8.64e15 - 1]) {
      expect(() => reference(ms)).toThrow(RangeError);
      expect(() => formatIsoInstant(ms)).toThrow(RangeError);
      expect(() => isoText(ms)).toThrow(RangeError);
      expect(() => dateTimeScalar.serialize(ms)).toThrow(RangeError);
    }
  });

  it('on every minute of a day and on random instants of years 0..9999', () => {
    const day = Date.UTC(2026, 0, 1);
    for (let m = 0; m < 1440; m++) expect(isoText(day + m * 60_000)).toBe(reference(day + m * 60_000));
    const rand = seededRandom(11);
    const lo = -62_167_219_200_000;
    const hi = 253_402_300_799_999;
    for (let i = 0; i < 200_000; i++) {
      const ms = Math.floor(lo + rand() * (hi - lo));
      const text = formatIsoInstant(ms);
      if (text !== reference(ms)) expect(text, String(ms)).toBe(reference(ms));
    }
  });

  it('keeps answering right when instants evict each other from the cache', () => {
    // 2^14 minutes apart: the same slot. Alternate them, and instants inside one minute.
    const a = Date.UTC(2026, 0, 1);
    const b = a + 16_384 * 60_000;
    for (let i = 0; i < 10; i++) {
      expect(isoText(a)).toBe(reference(a));
      expect(isoText(b)).toBe(reference(b));
      expect(isoText(a + i)).toBe(reference(a + i));
      expect(isoText(a + 59_999 - i)).toBe(reference(a + 59_999 - i));
    }
    const rand = seededRandom(5);
    for (let i = 0; i < 50_000; i++) {
      const ms = a + Math.floor(rand() * 30 * 86_400_000);
      expect(isoText(ms) === reference(ms), String(ms)).toBe(true);
    }
  });

  it('serializes numbers and Dates, and refuses other values', () => {
    expect(dateTimeScalar.serialize(Date.UTC(2026, 0, 1))).toBe('2026-01-01T00:00:00.000Z');
    expect(dateTimeScalar.serialize(new Date(Date.UTC(2026, 0, 1)))).toBe('2026-01-01T00:00:00.000Z');
    expect(() => dateTimeScalar.serialize('2026-01-01')).toThrow(/cannot serialize string as DateTime/);
  });
});
