import { describe, expect, it } from 'vitest';
import { loadMetricDefinitions, maxWindowPlusLatenessMs, parseMetricDefinitions } from '../definitions.ts';
import { ConfigError } from '../../errors.ts';

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
