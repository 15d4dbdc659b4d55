/**
 * Retention in the metric file (the defaults, the layers, sizes without an entry, the refusals
 * with file positions) and the one expiry rule at its boundary.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../errors.ts';
import { parseMetricDefinitions } from '../definitions.ts';
import {
  DEFAULT_RETENTION_MS,
  isWindowExpired,
  oldestKeptWindowStart,
  resolveRetention,
  retentionMsOf,
  retentionSizeName,
  windowExpiresAt,
} from '../retention.ts';
import { seededRandom } from '../../ingest/generator.ts';

const DAY = 86_400_000;
const base = (extra = '', metricExtra = '') => `version: 1
${extra}metrics:
  - name: views
    key: page
    granularities: [minute, hour, day]
    allowedLateness: 10m
${metricExtra}`;

function errorOf(text: string): string {
  try {
    parseMetricDefinitions(text, 'm.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('retention in the metric file', () => {
  it('defaults to minute 7d, hour 90d, day 1825d', () => {
    const m = parseMetricDefinitions(base()).metrics[0]!;
    expect(m.retention).toEqual({ minute: 7 * DAY, hour: 90 * DAY, day: 1825 * DAY });
    expect(retentionMsOf(m.retention, 'minute', 60_000)).toBe(7 * DAY);
    // Definitions stored before retention existed carry none: the defaults.
    expect(retentionMsOf(undefined, 'day', DAY)).toBe(DEFAULT_RETENTION_MS.day);
  });

  it("layers the file's retention and the metric's own over the defaults", () => {
    const m = parseMetricDefinitions(base('retention: { minute: 2d, hour: 30d }\n', '    retention: { minute: 1d }\n')).metrics[0]!;
    expect(m.retention).toEqual({ minute: DAY, hour: 30 * DAY, day: 1825 * DAY });
  });

  it('keeps a size without an entry as long as the next coarser named size; its own entry wins', () => {
    const policy = resolveRetention({ '15m': '3d', '60m': '40d' });
    expect(policy.hour).toBe(40 * DAY); // 60m is hour
    expect(retentionMsOf(policy, '15m', 15 * 60_000)).toBe(3 * DAY);
    expect(retentionMsOf(policy, '5m', 5 * 60_000)).toBe(40 * DAY); // next coarser: hour
    expect(retentionMsOf(policy, '30s', 30_000)).toBe(7 * DAY); // minute
    expect(retentionMsOf(policy, '6h', 6 * 3_600_000)).toBe(1825 * DAY); // day
    expect(retentionMsOf(policy, '7d', 7 * DAY)).toBe(1825 * DAY); // beyond a day: day
    expect(retentionSizeName('1440m')).toBe('day');
    expect(retentionSizeName('week')).toBeUndefined();
  });

  it('refuses bad sizes, bad durations, the same size twice, and a retention not longer than the lateness, with positions', () => {
    expect(errorOf(base('retention: { week: 30d }\n'))).toMatch(
      /m\.yaml:2:\d+ retention\.week: expected a window size: minute, hour, day or a duration such as 5m or 6h, got "week"/,
    );
    expect(errorOf(base('retention: { minute: forever }\n'))).toMatch(
      /retention\.minute: must be a positive duration such as 7d, 90d or 1825d, got "forever"/,
    );
    expect(errorOf(base('retention: { hour: 1d, 60m: 2d }\n'))).toMatch(/retention\.60m: names the same window size as "hour"/);
    expect(errorOf(base('', '    retention: { minute: 10m }\n'))).toMatch(
      /m\.yaml:7:\d+ metrics\[0\]\.retention: minute windows are kept for 10m, which must be longer than allowedLateness 10m .*set retention\.minute/,
    );
  });
});

describe('the expiry rule', () => {
  it('a window expires once the watermark is past start + size + retention, not at it', () => {
    const start = Date.UTC(2026, 0, 1);
    const at = windowExpiresAt(start, 60_000, 7 * DAY);
    expect(at).toBe(start + 60_000 + 7 * DAY);
    expect(isWindowExpired(at, at)).toBe(false);
    expect(isWindowExpired(at, at + 1)).toBe(true);
    expect(oldestKeptWindowStart(at, 60_000, 7 * DAY)).toBe(start);
    expect(oldestKeptWindowStart(at + 1, 60_000, 7 * DAY)).toBe(start + 60_000);
  });

  it('the oldest kept window start agrees with the rule on generated watermarks, sizes and retentions', () => {
    const rand = seededRandom(16_3);
    for (let i = 0; i < 5000; i++) {
      const size = [1000, 60_000, 300_000, 3_600_000, DAY][Math.floor(rand() * 5)]!;
      const retention = 1 + Math.floor(rand() * 10 * DAY);
      const watermark = Math.floor((rand() - 0.3) * 4e12);
      const oldest = oldestKeptWindowStart(watermark, size, retention);
      expect(((oldest % size) + size) % size).toBe(0);
      expect(isWindowExpired(windowExpiresAt(oldest, size, retention), watermark)).toBe(false);
      expect(isWindowExpired(windowExpiresAt(oldest - size, size, retention), watermark)).toBe(true);
    }
  });
});
