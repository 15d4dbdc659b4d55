/**
 * One metric definition, two engines: the speed layer's JavaScript and the batch layer's DuckDB
 * SQL are both compiled here, side by side, from the rules of fieldSemantics.ts (how a field
 * becomes a filter match, a key, a value and a distinct value) and windowStart.ts (the window of
 * an event time), so that a reader can check they agree rule by rule.
 *
 * - filter: strict JSON equality of type and value (the string "1" does not match the number 1);
 *   a field may accept several values; a missing field never matches. Beside equality, a field's
 *   conditions (`compileCondition` / `conditionSql`): not, numeric bounds, exists.
 * - key: the key field's text (`fieldText`); events without a scalar key field do not match. A
 *   composite key: every part must be there, the key is `compositeKeyText` of the parts' texts.
 * - value: counted in sum/min/max only when the field is a finite JSON number; otherwise the
 *   event still counts in `count`.
 * - distinct: the text of the field, added to a HyperLogLog sketch when present.
 * Fields are top-level names of flat events, or dotted paths under the metric file's `event:`
 * section: the JavaScript reads the values the event decoder found at them
 * (services/events/decoders/), keyed by the field's text; the SQL walks the paths.
 *
 * The filter is one conjunction of per-field tests, built in `compileFilter` / `filterSql`
 * (equality, `in`) and `compileCondition` / `conditionSql` (not, ranges, exists); a new kind of
 * test is added there, for both engines at once.
 *
 * Each engine's emission is one function of the definition (`compileMetric` for JavaScript,
 * `compileMetricSql` for DuckDB); another SQL engine's emitter reads the same definition and the
 * same rules and lives in a file of its own beside this one.
 */
import { keyFieldsOf, type Granularity, type MetricDefinition } from './definitions.ts';
import {
  FLAT_EVENT_MAPPING,
  compileCondition,
  compileFilter,
  compositeKeyText,
  compositeKeyTextSql,
  conditionAccepts,
  conditionSql,
  fieldText,
  fieldTextSql,
  filterAccepts,
  filterSql,
  hasScalarSql,
  numericValue,
  numericValueSql,
  sqlField,
  type FieldValues,
  type SqlField,
} from './fieldSemantics.ts';
import { windowShape, windowStartSql } from './windowStart.ts';

// ---------------------------------------------------------------- speed layer (JavaScript)

export interface CompiledMetric {
  readonly def: MetricDefinition;
  matches(fields: FieldValues): boolean;
  /** The group key, or undefined when the event has no usable key (then it does not match). */
  keyOf(fields: FieldValues): string | undefined;
  valueOf(fields: FieldValues): number | undefined;
  distinctOf(fields: FieldValues): string | undefined;
}

export function compileMetric(def: MetricDefinition): CompiledMetric {
  const filters = Object.entries(def.filter).map(([field, accepted]) => compileFilter(field, accepted));
  const conditions = Object.entries(def.conditions ?? {}).map(([field, c]) => compileCondition(field, c));
  const keyFields = keyFieldsOf(def);
  const keyField = keyFields[0]!;
  const composite = keyFields.length > 1;
  const valueField = def.value;
  const distinctField = def.distinct;
  return {
    def,
    matches(fields) {
      for (const f of filters) if (!filterAccepts(f, fields[f.field])) return false;
      for (const c of conditions) if (!conditionAccepts(c, fields[c.field])) return false;
      if (composite) {
        for (const k of keyFields) if (fields[k] === undefined) return false;
        return true;
      }
      return fields[keyField] !== undefined;
    },
    keyOf(fields) {
      if (composite) {
        const parts: string[] = [];
        for (const k of keyFields) {
          const v = fields[k];
          if (v === undefined) return undefined;
          parts.push(fieldText(v));
        }
        return compositeKeyText(parts);
      }
      const v = fields[keyField];
      return v === undefined ? undefined : fieldText(v);
    },
    valueOf(fields) {
      return valueField === undefined ? undefined : numericValue(fields[valueField]);
    },
    distinctOf(fields) {
      if (distinctField === undefined) return undefined;
      const v = fields[distinctField];
      return v === undefined ? undefined : fieldText(v);
    },
  };
}

// ---------------------------------------------------------------- batch layer (DuckDB SQL)

export interface CompiledMetricSql {
  /** Boolean expression: the event matches the metric (filter and key present). */
  where: string;
  key: string;
  /** DOUBLE expression or NULL when the event carries no numeric value. */
  value: string;
  /** VARCHAR expression for the distinct field, NULL when absent or undefined. */
  distinct: string;
  /** The window start of the BIGINT event-time expression `ts` (epoch ms). */
  windowStart(granularity: Granularity, ts: string): string;
}

/**
 * The metric over `doc`, an SQL expression holding the event's JSON text (or part of it).
 * `fieldOf` says where a field is in `doc`: by default where the metric's mapping puts it in an
 * event (a top-level name, or a path); the batch recompute passes the members of the document it
 * rebuilt from the fields it extracted (batch/views/batchViews.ts).
 */
export function compileMetricSql(
  def: MetricDefinition,
  doc: string,
  fieldOf: (field: string) => SqlField = (f) => sqlField(f, def.event ?? FLAT_EVENT_MAPPING),
): CompiledMetricSql {
  const conditions = Object.entries(def.filter).map(([field, accepted]) => filterSql(doc, fieldOf(field), accepted));
  for (const [field, c] of Object.entries(def.conditions ?? {})) conditions.push(conditionSql(doc, fieldOf(field), c));
  const keyFields = keyFieldsOf(def);
  for (const k of keyFields) conditions.push(hasScalarSql(doc, fieldOf(k)));
  return {
    where: conditions.join(' AND '),
    key:
      keyFields.length === 1
        ? fieldTextSql(doc, fieldOf(keyFields[0]!))
        : compositeKeyTextSql(keyFields.map((k) => fieldTextSql(doc, fieldOf(k)))),
    value: def.value === undefined ? 'CAST(NULL AS DOUBLE)' : numericValueSql(doc, fieldOf(def.value)),
    distinct: def.distinct === undefined ? 'CAST(NULL AS VARCHAR)' : fieldTextSql(doc, fieldOf(def.distinct)),
    windowStart: (g, ts) => {
      const w = windowShape(g);
      return windowStartSql(ts, w.sizeMs, w.originMs);
    },
  };
}
