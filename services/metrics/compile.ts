/**
 * One metric definition, two engines: the speed layer's JavaScript and the batch layer's DuckDB
 * SQL are both compiled here, side by side, so that a reader can check they agree rule by rule.
 *
 * The rules (documented in docs/metrics.md):
 * - filter: strict JSON equality of type and value (the string "1" does not match the number 1);
 *   a field may accept several values; a missing field never matches.
 * - key: the key field's canonical text (see `canonicalText`); events without a scalar key field
 *   do not match the metric.
 * - value: counted in sum/min/max only when the field is a JSON number; otherwise the event still
 *   counts in `count`.
 * - distinct: the canonical text of the field, added to a HyperLogLog sketch when present.
 * - window: tumbling, UTC-aligned, start = floor(ts / size) * size.
 */
import type { AttributeValue } from '../events/event.ts';
import { GRANULARITY_MS, type Granularity, type MetricDefinition } from './definitions.ts';

/**
 * Canonical text of a scalar, identical in JS and SQL: strings as they are, booleans as
 * true/false, integral numbers below 1e15 in plain digits, other numbers in shortest round-trip
 * form. (Integers beyond 2^53 cannot be represented exactly by JavaScript: use strings for them.)
 */
export function canonicalText(value: AttributeValue): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return String(value);
}

export function windowStart(tsMs: number, granularity: Granularity): number {
  const size = GRANULARITY_MS[granularity];
  return Math.floor(tsMs / size) * size;
}

// ---------------------------------------------------------------- speed layer (JavaScript)

export interface CompiledMetric {
  readonly def: MetricDefinition;
  matches(fields: Readonly<Record<string, AttributeValue>>): boolean;
  /** The group key, or undefined when the event has no usable key (then it does not match). */
  keyOf(fields: Readonly<Record<string, AttributeValue>>): string | undefined;
  valueOf(fields: Readonly<Record<string, AttributeValue>>): number | undefined;
  distinctOf(fields: Readonly<Record<string, AttributeValue>>): string | undefined;
}

export function compileMetric(def: MetricDefinition): CompiledMetric {
  const filters = Object.entries(def.filter).map(([field, accepted]) => ({ field, accepted: new Set(accepted) }));
  const keyField = def.key;
  const valueField = def.value;
  const distinctField = def.distinct;
  return {
    def,
    matches(fields) {
      for (const f of filters) {
        const v = fields[f.field];
        // Set membership is SameValueZero: strict in type, which is the documented rule.
        if (v === undefined || !f.accepted.has(v)) return false;
      }
      return fields[keyField] !== undefined;
    },
    keyOf(fields) {
      const v = fields[keyField];
      return v === undefined ? undefined : canonicalText(v);
    },
    valueOf(fields) {
      if (valueField === undefined) return undefined;
      const v = fields[valueField];
      return typeof v === 'number' ? v : undefined;
    },
    distinctOf(fields) {
      if (distinctField === undefined) return undefined;
      const v = fields[distinctField];
      return v === undefined ? undefined : canonicalText(v);
    },
  };
}

// ---------------------------------------------------------------- batch layer (DuckDB SQL)

/** The lake columns the batch SQL reads (the lake writer's contract, see docs/lake.md). */
export const LAKE_COLUMNS = { id: 'id', tsMs: 'ts_ms', raw: 'raw' } as const;

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function jsonPath(field: string): string {
  return sqlString(`$."${field.replace(/"/g, '\\"')}"`);
}

function sqlLiteralMatch(raw: string, field: string, accepted: readonly AttributeValue[]): string {
  const path = jsonPath(field);
  const type = `json_type(${raw}, ${path})`;
  const strings = accepted.filter((v): v is string => typeof v === 'string');
  const numbers = accepted.filter((v): v is number => typeof v === 'number');
  const booleans = accepted.filter((v): v is boolean => typeof v === 'boolean');
  const parts: string[] = [];
  if (strings.length > 0) {
    parts.push(`(${type} = 'VARCHAR' AND json_extract_string(${raw}, ${path}) IN (${strings.map(sqlString).join(', ')}))`);
  }
  if (numbers.length > 0) {
    parts.push(
      `(${type} IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND TRY_CAST(json_extract(${raw}, ${path}) AS DOUBLE) IN (${numbers.map((n) => `CAST(${String(n)} AS DOUBLE)`).join(', ')}))`,
    );
  }
  if (booleans.length > 0) {
    parts.push(`(${type} = 'BOOLEAN' AND json_extract_string(${raw}, ${path}) IN (${booleans.map((b) => `'${b}'`).join(', ')}))`);
  }
  return `(${parts.join(' OR ')})`;
}

/** SQL for the canonical text of a field (see `canonicalText`), NULL when absent. */
export function canonicalTextSql(raw: string, field: string): string {
  const path = jsonPath(field);
  const d = `TRY_CAST(json_extract(${raw}, ${path}) AS DOUBLE)`;
  return `(CASE json_type(${raw}, ${path})
    WHEN 'VARCHAR' THEN json_extract_string(${raw}, ${path})
    WHEN 'BOOLEAN' THEN json_extract_string(${raw}, ${path})
    WHEN 'BIGINT' THEN CAST(TRY_CAST(json_extract(${raw}, ${path}) AS BIGINT) AS VARCHAR)
    WHEN 'UBIGINT' THEN CAST(TRY_CAST(json_extract(${raw}, ${path}) AS UBIGINT) AS VARCHAR)
    WHEN 'DOUBLE' THEN CASE WHEN ${d} = trunc(${d}) AND abs(${d}) < 1e15 THEN CAST(CAST(${d} AS BIGINT) AS VARCHAR) ELSE CAST(${d} AS VARCHAR) END
    ELSE NULL END)`;
}

export interface CompiledMetricSql {
  /** Boolean expression: the event matches the metric (filter and key present). */
  where: string;
  key: string;
  /** DOUBLE expression or NULL when the event carries no numeric value. */
  value: string;
  /** VARCHAR expression for the distinct field, NULL when absent or undefined. */
  distinct: string;
  windowStart(granularity: Granularity): string;
}

export function compileMetricSql(def: MetricDefinition, raw: string = LAKE_COLUMNS.raw): CompiledMetricSql {
  const conditions = Object.entries(def.filter).map(([field, accepted]) => sqlLiteralMatch(raw, field, accepted));
  conditions.push(`json_type(${raw}, ${jsonPath(def.key)}) IN ('VARCHAR', 'BOOLEAN', 'BIGINT', 'UBIGINT', 'DOUBLE')`);
  const valuePath = def.value === undefined ? undefined : jsonPath(def.value);
  return {
    where: conditions.join(' AND '),
    key: canonicalTextSql(raw, def.key),
    value:
      valuePath === undefined
        ? 'CAST(NULL AS DOUBLE)'
        : `(CASE WHEN json_type(${raw}, ${valuePath}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST(json_extract(${raw}, ${valuePath}) AS DOUBLE) END)`,
    distinct: def.distinct === undefined ? 'CAST(NULL AS VARCHAR)' : canonicalTextSql(raw, def.distinct),
    windowStart: (g) => `((${LAKE_COLUMNS.tsMs} // ${GRANULARITY_MS[g]}) * ${GRANULARITY_MS[g]})`,
  };
}
