import { describe, expect, it } from 'vitest';
import { loadMetricDefinitions, maxWindowPlusLatenessMs, parseMetricDefinitions } from '../definitions.ts';
import { ConfigError } from '../../errors.ts';
import { compareDefinitions, metricDifferences, metricsFingerprint } from '../../versions/metricChanges.ts';

const valid = `version: 1
metrics:
  - name: clicks
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
`;

function errorOf(text: string): string {
  try {
    parseMetricDefinitions(text, 'm.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('metric definitions', () => {
  it('loads the shipped metrics.yaml', () => {
    const defs = loadMetricDefinitions('metrics.yaml');
    expect(defs.metrics.map((m) => m.name)).toEqual(['impressions_by_campaign', 'clicks_by_ad', 'spend_by_campaign']);
    expect(defs.metrics[2]!.filter).toEqual({ type: ['click', 'conversion'] });
    expect(maxWindowPlusLatenessMs(defs)).toBe(86_400_000 + 3_600_000);
  });

  it('normalizes filters and durations', () => {
    const m = parseMetricDefinitions(valid).metrics[0]!;
    expect(m).toMatchObject({ name: 'clicks', filter: { type: ['click'] }, key: 'ad_id', value: 'cost', allowedLatenessMs: 600_000 });
  });

  it('points at the line and column of a bad value', () => {
    expect(errorOf(valid.replace('[minute, hour]', '[minute, week]'))).toMatch(
      /^invalid metric definitions: m\.yaml:7:\d+ metrics\[0\]\.granularities\[1\]: /,
    );
  });

  it('reports a missing field at its object', () => {
    expect(errorOf(valid.replace('    key: ad_id\n', ''))).toMatch(/m\.yaml:3:\d+ metrics\[0\]\.key: /);
  });

  it('refuses unknown keys (typos) and bad durations', () => {
    expect(errorOf(valid.replace('value: cost', 'valeu: cost'))).toMatch(/m\.yaml:3:\d+ metrics\[0\]: .*valeu/);
    expect(errorOf(valid.replace('10m', '10 minutes'))).toMatch(/m\.yaml:8:\d+ metrics\[0\]\.allowedLateness: must be a duration/);
  });

  it('refuses duplicate metric names and bad names', () => {
    const dup = valid + valid.split('metrics:\n')[1]!;
    expect(errorOf(dup)).toMatch(/duplicate metric name "clicks"/);
    expect(errorOf(valid.replace('name: clicks', 'name: Clicks!'))).toMatch(/metrics\[0\]\.name: must be lower_snake_case/);
  });

  it('percentiles: true is 1 %, an accuracy is checked, and they need a value', () => {
    const at = (p: string) => valid.replace('value: cost', `value: cost\n    percentiles: ${p}`);
    expect(parseMetricDefinitions(at('true')).metrics[0]!.percentiles).toEqual({ relativeAccuracy: 0.01 });
    expect(parseMetricDefinitions(at('{ relativeAccuracy: 0.02 }')).metrics[0]!.percentiles).toEqual({ relativeAccuracy: 0.02 });
    expect(errorOf(at('{ relativeAccuracy: 0.7 }'))).toMatch(/metrics\[0\]\.percentiles\.relativeAccuracy: must be below 0\.5/);
    expect(errorOf(at('{ relativeAccuracy: 0 }'))).toMatch(/percentiles\.relativeAccuracy: must be at least 0\.001/);
    expect(errorOf(at('true').replace('    value: cost\n', ''))).toMatch(/metrics\[0\]\.percentiles: needs a value field/);
  });

  it('reports YAML syntax errors with their position', () => {
    expect(errorOf('metrics:\n  - name: [unclosed\n')).toMatch(/^m\.yaml:\d+:\d+ /);
  });

  it('reads JSON too, and says clearly when the file is missing', () => {
    expect(
      parseMetricDefinitions(JSON.stringify({ metrics: [{ name: 'a', key: 'k', granularities: ['day'], allowedLateness: '1h' }] }))
        .metrics[0]!.filter,
    ).toEqual({});
    expect(() => loadMetricDefinitions('/nonexistent/metrics.yaml')).toThrow(
      /metric definitions not found: .* \(set --metrics or LK_METRICS\)/,
    );
  });
});

describe('the event: section', () => {
  const foreign = `event: { id: meta.eventId, time: meta.occurredAt, timeFormat: epoch-s, type: meta.kind }
metrics:
  - name: fares
    filter: { meta.kind: trip_completed, payload."user.tier": [1, gold] }
    key: payload.city
    value: payload.fare
    distinct: '"payload"."rider id"'
    granularities: [minute, hour, day]
    allowedLateness: 1h
`;

  it('reads the mapping and takes metric fields as dotted paths, in their canonical text', () => {
    const defs = parseMetricDefinitions(foreign, 'm.yaml');
    const mapping = { flat: false, id: 'meta.eventId', time: 'meta.occurredAt', timeFormat: 'epoch-s', type: 'meta.kind' };
    expect(defs.event).toEqual(mapping);
    expect(defs.metrics[0]).toMatchObject({
      key: 'payload.city',
      value: 'payload.fare',
      distinct: 'payload."rider id"',
      filter: { 'meta.kind': ['trip_completed'], 'payload."user.tier"': [{ number: '1' }, 'gold'] },
      event: mapping,
    });
  });

  it('without it, everything is as before: flat field names, no mapping on the metrics', () => {
    const defs = parseMetricDefinitions(valid);
    expect(defs.event).toMatchObject({ flat: true, id: 'id', time: 'ts', timeFormat: 'auto', type: 'type' });
    expect('event' in defs.metrics[0]!).toBe(false);
    expect(errorOf(valid.replace('key: ad_id', 'key: payload."x"'))).toMatch(/metrics\[0\]\.key: must be an event field name/);
  });

  it('record keys and timestamps: $key, $timestamp, and what they cannot be', () => {
    const withKey = parseMetricDefinitions(
      foreign.replace('id: meta.eventId', 'id: $key').replace('time: meta.occurredAt, timeFormat: epoch-s', 'time: $timestamp'),
    );
    expect(withKey.event).toMatchObject({ id: '$key', time: '$timestamp', timeFormat: 'epoch-ms' });
    expect(errorOf(foreign.replace('time: meta.occurredAt', 'time: $key'))).toMatch(/event\.time: \$key can only be event\.id/);
    expect(errorOf(foreign.replace('time: meta.occurredAt', 'time: $timestamp'))).toMatch(
      /event\.timeFormat: does not apply to \$timestamp/,
    );
    expect(errorOf(foreign.replace('key: payload.city', 'key: $key'))).toMatch(/metrics\[0\]\.key: \$key is the record's key/);
  });

  it('refuses paths it cannot read, with the reason', () => {
    expect(errorOf(foreign.replace('key: payload.city', 'key: payload..city'))).toMatch(
      /metrics\[0\]\.key: must be a dotted path: an empty name/,
    );
    expect(errorOf(foreign.replace('key: payload.city', 'key: items[0].price'))).toMatch(
      /metrics\[0\]\.key: must be a dotted path: the name "items\[0\]"/,
    );
    expect(errorOf(foreign.replace('timeFormat: epoch-s', 'timeFormat: epoch-ns'))).toMatch(
      /event\.timeFormat: expected one of auto, iso, epoch-ms, epoch-s, epoch-us, got "epoch-ns"/,
    );
    expect(errorOf(foreign.replace('type: meta.kind }', 'type: meta.kind, format: avro }'))).toMatch(/event: .*format/);
  });

  it('a changed mapping is a changed file: refused on old state, and said in words', () => {
    const a = parseMetricDefinitions(foreign).metrics;
    const b = parseMetricDefinitions(
      foreign.replace('timeFormat: epoch-s', 'timeFormat: epoch-ms').replace('id: meta.eventId', 'id: $key'),
    ).metrics;
    expect(metricDifferences(a, b)).toEqual([
      'event.id is $key in the file, meta.eventId in the version',
      'event.timeFormat is epoch-ms in the file, epoch-s in the version',
    ]);
    expect(compareDefinitions(a, b, 'checkpoints').problems[0]).toMatch(
      /^the event mapping changed \(event\.id is meta\.eventId in the checkpoints, \$key in the metric file; .*replay it into a new --version$/,
    );
    expect(
      metricDifferences(parseMetricDefinitions(valid).metrics, parseMetricDefinitions(foreign.replace(/fares/, 'clicks')).metrics)[0],
    ).toBe('the event shape is an event: section in the file, flat events (no event: section) in the version');
    expect(metricsFingerprint(a)).not.toBe(metricsFingerprint(b));
  });
});

describe('session metrics', () => {
  const session = (extra: string) => `version: 1
metrics:
  - name: rides
    key: rider
    value: fare
    distinct: driver
    allowedLateness: 5m
${extra}`;

  it('declare session: { gap } in place of granularities', () => {
    const [m] = parseMetricDefinitions(session('    session: { gap: 30m }\n')).metrics;
    expect(m!.session).toEqual({ gapMs: 1_800_000 });
    expect(m!.granularities).toEqual([]);
    // The dedup horizon covers gap + lateness.
    expect(maxWindowPlusLatenessMs(parseMetricDefinitions(session('    session: { gap: 30m }\n')))).toBe(35 * 60_000);
  });

  it('refuse both, neither, a gap that is no positive duration, and percentiles, each with a precise message', () => {
    expect(errorOf(session('    session: { gap: 30m }\n    granularities: [minute]\n'))).toMatch(
      /metrics\[0\]\.session: a metric has either granularities \(tumbling windows\) or session \(session windows\), not both/,
    );
    expect(errorOf(session(''))).toMatch(/metrics\[0\]: must list granularities .* or declare session: \{ gap: 30m \}/);
    expect(errorOf(session('    session: { gap: 0s }\n'))).toMatch(/metrics\[0\]\.session\.gap: must be a positive duration/);
    expect(errorOf(session('    session: { gap: soon }\n'))).toMatch(
      /metrics\[0\]\.session\.gap: must be a duration like 30s, 30m or 2h, got "soon"/,
    );
    expect(errorOf(session('    session: { gap: 30m, size: 1h }\n'))).toMatch(/metrics\[0\]\.session: .*size/);
    expect(errorOf(session('    session: { gap: 30m }\n    percentiles: true\n'))).toMatch(
      /metrics\[0\]\.percentiles: percentiles are not computed for session metrics/,
    );
    expect(errorOf(session('    session: { gap: 30m }\n    retention: { hour: 1m }\n'))).toMatch(
      /30m windows are kept for 1m, which must be longer than allowedLateness 5m/,
    );
  });

  it('a changed gap is a changed metric for checkpoints and versions', () => {
    const a = parseMetricDefinitions(session('    session: { gap: 30m }\n')).metrics;
    const b = parseMetricDefinitions(session('    session: { gap: 10m }\n')).metrics;
    expect(compareDefinitions(a, b, 'checkpoints').problems[0]).toMatch(/metric "rides": session changed/);
    expect(metricDifferences(a, b)).toEqual(['metric "rides": session is {"gapMs":600000} in the file, {"gapMs":1800000} in the version']);
    // Sessions are kept as windows of the gap's size: a longer retention cannot bring expired ones back.
    const kept = (r: string) => parseMetricDefinitions(session(`    session: { gap: 30m }\n    retention: { 30m: ${r} }\n`)).metrics;
    expect(compareDefinitions(kept('7d'), kept('30d'), 'checkpoints').problems).toEqual([
      'metric "rides": session retention grew from 7d to 30d; sessions the checkpoints already expired and deleted cannot come back; start a new --version',
    ]);
    expect(compareDefinitions(kept('30d'), kept('7d'), 'checkpoints').notes).toContain(
      'metric "rides": session retention shrank from 30d to 7d; sessions expire sooner',
    );
  });
});
