/**
 * Metric definitions: the one file that both engines are compiled from (see `compile.ts`).
 *
 * Loaded from YAML or JSON, validated with zod, and every error is reported with the file, line
 * and column of the offending node, so that `lk` can say "metrics.yaml:7:14 granularities[1]:
 * expected one of minute, hour, day or a duration (5m, 15m, 6h, 7d), got "week"".
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode, isScalar, isSeq, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { DEFAULT_RELATIVE_ACCURACY } from './ddsketch.ts';
import { formatDuration, parseDuration } from '../config/durations.ts';
import {
  FLAT_EVENT_MAPPING,
  RECORD_KEY,
  RECORD_TIMESTAMP,
  TIME_FORMATS,
  filterNumber,
  formatFieldPath,
  parseFieldPath,
  type EventMapping,
  type FieldCondition,
  type FilterValue,
} from './fieldSemantics.ts';
import { resolveRetention, retentionMsOf, retentionProblem, retentionSchema, type RetentionPolicy } from './retention.ts';

/** The named tumbling windows; any other size is written as a duration (`5m`, `15m`, `6h`, `7d`). */
export const GRANULARITIES = ['minute', 'hour', 'day'] as const;
export type NamedGranularity = (typeof GRANULARITIES)[number];
/**
 * A tumbling window size in its canonical name: `minute`, `hour`, `day`, or the shortest duration
 * text of any other size (`5m`, `15m`, `6h`, `7d`; `60m` is `hour`). One name per size, so that
 * rows, slots and GraphQL agree on it (`parseGranularity`).
 */
export type Granularity = string;
export const GRANULARITY_MS: Record<NamedGranularity, number> = {
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
};
/** Window sizes from 1 s to 366 days, in whole seconds (windowStart.ts aligns them). */
export const MIN_WINDOW_MS = 1000;
export const MAX_WINDOW_MS = 366 * 86_400_000;

/**
 * The canonical name of a window size written as `minute`, `hour`, `day` or a duration, or why
 * it is none.
 */
export function parseGranularity(text: string): { ok: true; granularity: Granularity; sizeMs: number } | { ok: false; error: string } {
  const named = (GRANULARITIES as readonly string[]).includes(text) ? GRANULARITY_MS[text as NamedGranularity] : undefined;
  const sizeMs = named ?? (/^\d+(s|m|h|d)$/.test(text) ? parseDuration(text) : undefined);
  if (sizeMs === undefined)
    return { ok: false, error: `expected one of minute, hour, day or a duration (5m, 15m, 6h, 7d), got ${JSON.stringify(text)}` };
  if (sizeMs < MIN_WINDOW_MS || sizeMs > MAX_WINDOW_MS)
    return { ok: false, error: `a window size must be from 1s to 366d, got ${JSON.stringify(text)}` };
  return { ok: true, granularity: granularityNameOf(sizeMs), sizeMs };
}

/** The canonical name of a window size (a named one where the size is a minute, an hour or a day). */
export function granularityNameOf(sizeMs: number): Granularity {
  for (const g of GRANULARITIES) if (GRANULARITY_MS[g] === sizeMs) return g;
  return formatDuration(sizeMs);
}

/** Whether `g` is a granularity in its canonical name (a row, a slot or a query carries only those). */
export function isGranularity(g: string): boolean {
  const parsed = parseGranularity(g);
  return parsed.ok && parsed.granularity === g;
}

/** The window size of a canonical granularity name, ms. */
export function granularityMs(g: Granularity): number {
  const named = GRANULARITY_MS[g as NamedGranularity];
  if (named !== undefined) return named;
  const ms = parseDuration(g);
  if (ms === undefined) throw new Error(`not a granularity: ${JSON.stringify(g)}`);
  return ms;
}

/** Why `text` is no session gap (a duration from 1 ms to 366 days), or undefined. */
function sessionGapProblem(text: string): string | undefined {
  const ms = parseDuration(text);
  if (ms === undefined) return `must be a duration like 30s, 30m or 2h, got ${JSON.stringify(text)}`;
  if (ms <= 0) return `must be a positive duration (a gap of ${JSON.stringify(text)} would put every event in a session of its own)`;
  if (ms > MAX_WINDOW_MS) return `must be at most 366d, got ${JSON.stringify(text)}`;
  return undefined;
}

/** A flat event's field name (no `event:` section); with one, fields are dotted paths (checked in fileSchema). */
const FLAT_FIELD = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
const FLAT_FIELD_MESSAGE = 'must be an event field name (letters, digits, _ . -)';
const FIELD = z.string();
const SCALAR = z.union([z.string(), z.number().refine(Number.isFinite, 'must be a finite number'), z.boolean()]);

const VALUES = z.union([SCALAR, z.array(SCALAR).min(1, 'must list at least one value')]);
const BOUND = z.number().refine(Number.isFinite, 'must be a finite number');
/** A field's tests beside equality: `{ in: [...] }`, `{ not: ... }`, `{ gte: 5, lt: 10 }`, `{ exists: true }`. */
const conditionSchema = z
  .object({
    in: VALUES.optional(),
    not: VALUES.optional(),
    gt: BOUND.optional(),
    gte: BOUND.optional(),
    lt: BOUND.optional(),
    lte: BOUND.optional(),
    exists: z.boolean().optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).length > 0, 'must hold at least one of in, not, gt, gte, lt, lte, exists');
/** At most this many fields in a composite key. */
export const MAX_KEY_PARTS = 8;
const COMPOSITE_KEY = z
  .array(FIELD)
  .min(2, 'a composite key lists at least two fields (one field is written without brackets)')
  .max(MAX_KEY_PARTS, `a composite key lists at most ${MAX_KEY_PARTS} fields`)
  .refine((k) => new Set(k).size === k.length, 'must not repeat a field');

/**
 * One of two schemas chosen by the value's shape, so that an error is the chosen schema's own
 * (a plain union would say only "Invalid input").
 */
function byShape<A extends z.ZodType, B extends z.ZodType>(isA: (v: unknown) => boolean, a: A, b: B) {
  return z.unknown().transform((v, ctx): z.infer<A> | z.infer<B> => {
    const r = isA(v) ? a.safeParse(v) : b.safeParse(v);
    if (r.success) return r.data as z.infer<A> | z.infer<B>;
    for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    return z.NEVER;
  });
}
const isPlainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

const metricSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'must be lower_snake_case, start with a letter, at most 63 characters'),
    description: z.string().optional(),
    filter: z.record(FIELD, byShape(isPlainObject, conditionSchema, VALUES)).default({}),
    key: byShape(Array.isArray, COMPOSITE_KEY, FIELD),
    value: FIELD.optional(),
    distinct: FIELD.optional(),
    /**
     * A percentile sketch of `value` per window (services/metrics/ddsketch.ts): `true` for 1 %
     * relative accuracy, or `{ relativeAccuracy: 0.02 }`.
     */
    percentiles: z
      .union([
        z.literal(true),
        z
          .object({
            relativeAccuracy: z
              .number()
              .min(0.001, 'must be at least 0.001 (0.1 %): finer sketches cost more memory than they are worth')
              .lt(0.5, 'must be below 0.5'),
          })
          .strict(),
      ])
      .optional(),
    granularities: z
      .array(
        z.string().superRefine((g, ctx) => {
          const parsed = parseGranularity(g);
          if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.error });
        }),
      )
      .min(1, 'must list at least one window: minute, hour, day or a duration such as 5m')
      .refine(
        (g) => new Set(g.map((x) => (parseGranularity(x) as { granularity?: string }).granularity ?? x)).size === g.length,
        'must not repeat a window size (60m is hour)',
      )
      .optional(),
    /**
     * Session windows in place of `granularities` (services/metrics/sessionRule.ts): a key's
     * events whose times differ by less than `gap` along a chain are one session.
     */
    session: z
      .object({
        gap: z.string().superRefine((g, ctx) => {
          const problem = sessionGapProblem(g);
          if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
        }),
      })
      .strict()
      .optional(),
    allowedLateness: z.string().refine((s) => parseDuration(s) !== undefined, 'must be a duration like 30s, 5m, 2h or 1d'),
    /** How long this metric's windows are kept, per size, over the file's `retention:` (retention.ts). */
    retention: retentionSchema.optional(),
  })
  .strict();

/**
 * The `event:` section: where the platform finds an event's id, time and type in records of
 * another shape (services/metrics/fieldSemantics.ts states the rules).
 */
const eventSchema = z
  .object({
    id: z.string().min(1, 'must be a dotted path or $key'),
    time: z.string().min(1, 'must be a dotted path or $timestamp'),
    timeFormat: z
      .enum(TIME_FORMATS, { error: (issue) => `expected one of ${TIME_FORMATS.join(', ')}, got ${JSON.stringify(issue.input)}` })
      .optional(),
    type: z.string().optional(),
  })
  .strict()
  .superRefine((e, ctx) => {
    const path = (value: string, key: 'id' | 'time' | 'type') => {
      if (value === RECORD_KEY || value === RECORD_TIMESTAMP) {
        const allowed = key === 'id' ? RECORD_KEY : key === 'time' ? RECORD_TIMESTAMP : undefined;
        if (value !== allowed)
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `${value} can only be event.${value === RECORD_KEY ? 'id' : 'time'}; a field named ${value} is written "${value}"`,
          });
        return;
      }
      const parsed = parseFieldPath(value);
      if (!parsed.ok) ctx.addIssue({ code: 'custom', path: [key], message: `must be a dotted path: ${parsed.error}` });
    };
    path(e.id, 'id');
    path(e.time, 'time');
    if (e.type !== undefined) path(e.type, 'type');
    if (e.time === RECORD_TIMESTAMP && e.timeFormat !== undefined && e.timeFormat !== 'auto' && e.timeFormat !== 'epoch-ms')
      ctx.addIssue({
        code: 'custom',
        path: ['timeFormat'],
        message: `does not apply to $timestamp (the record timestamp is epoch milliseconds); omit it`,
      });
  });

/** Every metric field (filter names, key, value, distinct) with its place in the file. */
function metricFields(m: z.infer<typeof metricSchema>): { field: string; path: (string | number)[] }[] {
  return [
    ...Object.keys(m.filter).map((f) => ({ field: f, path: ['filter', f] })),
    ...(typeof m.key === 'string' ? [{ field: m.key, path: ['key'] }] : m.key.map((k, i) => ({ field: k, path: ['key', i] }))),
    ...(m.value !== undefined ? [{ field: m.value, path: ['value'] }] : []),
    ...(m.distinct !== undefined ? [{ field: m.distinct, path: ['distinct'] }] : []),
  ];
}

const fileSchema = z
  .object({
    version: z.literal(1).default(1),
    event: eventSchema.optional(),
    /** How long windows are kept, per size, for every metric (retention.ts). */
    retention: retentionSchema.optional(),
    metrics: z.array(metricSchema).min(1, 'must define at least one metric'),
  })
  .strict()
  .superRefine((file, ctx) => {
    // Field names of flat events, or dotted paths under an `event:` section.
    file.metrics.forEach((m, i) => {
      for (const { field, path } of metricFields(m)) {
        let message: string | undefined;
        if (file.event === undefined) message = FLAT_FIELD.test(field) ? undefined : FLAT_FIELD_MESSAGE;
        else if (field === RECORD_KEY || field === RECORD_TIMESTAMP)
          message = `${field} is the record's ${field === RECORD_KEY ? 'key' : 'timestamp'}, which only event: can name; a field named ${field} is written "${field}"`;
        else {
          const parsed = parseFieldPath(field);
          if (!parsed.ok) message = `must be a dotted path: ${parsed.error}`;
        }
        if (message !== undefined) ctx.addIssue({ code: 'custom', path: ['metrics', i, ...path], message });
      }
    });
    // Tumbling windows or sessions: one of the two, never both (a metric's rows are of one kind).
    file.metrics.forEach((m, i) => {
      if (m.granularities !== undefined && m.session !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['metrics', i, 'session'],
          message: 'a metric has either granularities (tumbling windows) or session (session windows), not both; define two metrics',
        });
      else if (m.granularities === undefined && m.session === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['metrics', i],
          message: 'must list granularities (minute, hour, day or a duration such as 5m) or declare session: { gap: 30m }',
        });
      if (m.session !== undefined && m.percentiles !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['metrics', i, 'percentiles'],
          message: 'percentiles are not computed for session metrics; keep them on a metric with granularities',
        });
    });
    // A window must close before it expires: each size's retention exceeds the metric's lateness.
    file.metrics.forEach((m, i) => {
      const lateness = parseDuration(m.allowedLateness);
      if (lateness === undefined) return;
      const policy = resolveRetention(file.retention, m.retention);
      const gapMs = m.session === undefined || sessionGapProblem(m.session.gap) !== undefined ? undefined : parseDuration(m.session.gap)!;
      if (gapMs !== undefined) {
        // A session is kept as long as the windows of its gap's size (sessionRetentionMs).
        const name = granularityNameOf(gapMs);
        const problem = retentionProblem(name, retentionMsOf(policy, name, gapMs), lateness);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['metrics', i, 'retention'], message: problem });
      }
      for (const text of m.granularities ?? []) {
        const parsed = parseGranularity(text);
        if (!parsed.ok) continue; // refused above
        const g = parsed.granularity;
        const problem = retentionProblem(g, retentionMsOf(policy, g, parsed.sizeMs), lateness);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['metrics', i, 'retention'], message: problem });
      }
    });
    file.metrics.forEach((m, i) => {
      if (m.percentiles !== undefined && m.value === undefined)
        ctx.addIssue({ code: 'custom', path: ['metrics', i, 'percentiles'], message: 'needs a value field: percentiles are of the value' });
    });
    const seen = new Set<string>();
    file.metrics.forEach((m, i) => {
      if (seen.has(m.name)) {
        ctx.addIssue({ code: 'custom', path: ['metrics', i, 'name'], message: `duplicate metric name "${m.name}"` });
      }
      seen.add(m.name);
    });
  });

/** A validated metric, with durations and filters in the form the engines use. */
export interface MetricDefinition {
  readonly name: string;
  readonly description?: string;
  /**
   * field -> accepted values (strict JSON equality: the string "1" does not match the number 1);
   * numbers by their canonical text, taken from the file's own digits (fieldSemantics.ts).
   */
  readonly filter: Readonly<Record<string, readonly FilterValue[]>>;
  /** field -> tests beside equality (not, numeric bounds, exists); absent when the file writes none. */
  readonly conditions?: Readonly<Record<string, FieldCondition>>;
  /**
   * The key field; for a composite key (`key: [payload.city, payload.vehicle]`), the parts as the
   * file writes them, bracketed (`[payload.city, payload.vehicle]`): read the fields with
   * `keyFieldsOf`, never from this text.
   */
  readonly key: string;
  /** A composite key's fields (two or more), in order; absent for a one-field key. */
  readonly keyParts?: readonly string[];
  readonly value?: string;
  readonly distinct?: string;
  /** A percentile sketch of the value per window, with its relative accuracy (ddsketch.ts). */
  readonly percentiles?: { readonly relativeAccuracy: number };
  /** The tumbling window sizes; empty for a session metric. */
  readonly granularities: readonly Granularity[];
  /**
   * Session windows (services/metrics/sessionRule.ts), in place of granularities: events of a key
   * whose times differ by less than `gapMs` along a chain are one session. Absent: tumbling windows.
   */
  readonly session?: { readonly gapMs: number };
  readonly allowedLatenessMs: number;
  /**
   * How long windows are kept, per size (services/metrics/retention.ts `retentionMsOf`). Every
   * parsed file has one; absent (definitions stored before retention existed): the defaults.
   */
  readonly retention?: RetentionPolicy;
  /**
   * The file's `event:` section, when it has one: then fields are dotted paths (their canonical
   * text, fieldSemantics.ts `formatFieldPath`). Absent: flat events, fields are top-level names.
   * Kept on every metric so that a metric says by itself how it reads events (a version's
   * checkpoints and savepoints store the metrics, and compare them).
   */
  readonly event?: EventMapping;
}

export interface MetricDefinitions {
  /** Where the definitions came from (a file path), for messages. */
  readonly source: string;
  /** The file's exact text, and its SHA-256: a job version is bound to one file (services/versions). */
  readonly text: string;
  readonly sha256: string;
  /** Where events keep their id, time and type: the `event:` section, or the flat model. */
  readonly event: EventMapping;
  readonly metrics: readonly MetricDefinition[];
}

/** The fields a metric's key reads: its one key field, or a composite key's parts in order. */
export function keyFieldsOf(def: Pick<MetricDefinition, 'key' | 'keyParts'>): readonly string[] {
  return def.keyParts ?? [def.key];
}

/** Every field a metric reads (filters, conditions, key parts, value, distinct), without repeats. */
export function metricFieldsOf(def: MetricDefinition): string[] {
  return [
    ...new Set([
      ...Object.keys(def.filter),
      ...Object.keys(def.conditions ?? {}),
      ...keyFieldsOf(def),
      ...(def.value === undefined ? [] : [def.value]),
      ...(def.distinct === undefined ? [] : [def.distinct]),
    ]),
  ];
}

/** The event mapping the metrics read with (they share the file's). */
export function eventMappingOf(defs: readonly MetricDefinition[]): EventMapping {
  return defs[0]?.event ?? FLAT_EVENT_MAPPING;
}

/**
 * A filter's accepted values in the engines' form: numbers by the canonical text of the digits
 * the file wrote (a YAML or JSON reader would round 9007199254740993 to a double first).
 */
function filterValues(
  doc: Document,
  metric: number,
  field: string,
  value: z.infer<typeof SCALAR> | z.infer<typeof SCALAR>[],
  under: string[] = [],
): FilterValue[] {
  const node = doc.getIn(['metrics', metric, 'filter', field, ...under], true);
  const nodes = isSeq(node) ? node.items : [node];
  return (Array.isArray(value) ? value : [value]).map((v, i) => {
    if (typeof v !== 'number') return v;
    const item = nodes[i];
    return filterNumber(isScalar(item) ? item.source : undefined, v);
  });
}

/** A path in its canonical text (the file may quote names that need no quotes). */
function canonicalPath(path: string): string {
  if (path === RECORD_KEY || path === RECORD_TIMESTAMP) return path;
  const parsed = parseFieldPath(path);
  return parsed.ok ? formatFieldPath(parsed.names) : path;
}

function normalize(raw: z.infer<typeof fileSchema>, source: string, doc: Document, text: string): MetricDefinitions {
  const e = raw.event;
  const event: EventMapping | undefined =
    e === undefined
      ? undefined
      : {
          flat: false,
          id: canonicalPath(e.id),
          time: canonicalPath(e.time),
          timeFormat: e.time === RECORD_TIMESTAMP ? 'epoch-ms' : (e.timeFormat ?? 'auto'),
          ...(e.type !== undefined ? { type: canonicalPath(e.type) } : {}),
        };
  const field = (f: string) => (event === undefined ? f : canonicalPath(f));
  /** A metric's filter: equality (a value, a list, `in`) per field, and the other tests. */
  const filters = (m: z.infer<typeof metricSchema>, i: number) => {
    const equal: Record<string, FilterValue[]> = {};
    const conditions: Record<string, FieldCondition> = {};
    for (const [f, v] of Object.entries(m.filter)) {
      if (typeof v !== 'object' || Array.isArray(v)) {
        equal[field(f)] = filterValues(doc, i, f, v);
        continue;
      }
      if (v.in !== undefined) equal[field(f)] = filterValues(doc, i, f, v.in, ['in']);
      const { in: _in, not, ...rest } = v;
      if (not !== undefined || Object.keys(rest).length > 0)
        conditions[field(f)] = { ...(not !== undefined ? { not: filterValues(doc, i, f, not, ['not']) } : {}), ...rest };
    }
    return { filter: equal, ...(Object.keys(conditions).length > 0 ? { conditions } : {}) };
  };
  return {
    source,
    text,
    sha256: createHash('sha256').update(text).digest('hex'),
    event: event ?? FLAT_EVENT_MAPPING,
    metrics: raw.metrics.map((m, i) => ({
      name: m.name,
      ...(m.description !== undefined ? { description: m.description } : {}),
      ...filters(m, i),
      ...(typeof m.key === 'string' ? { key: field(m.key) } : { key: `[${m.key.map(field).join(', ')}]`, keyParts: m.key.map(field) }),
      ...(m.value !== undefined ? { value: field(m.value) } : {}),
      ...(m.distinct !== undefined ? { distinct: field(m.distinct) } : {}),
      ...(m.percentiles !== undefined
        ? { percentiles: { relativeAccuracy: m.percentiles === true ? DEFAULT_RELATIVE_ACCURACY : m.percentiles.relativeAccuracy } }
        : {}),
      granularities: (m.granularities ?? []).map((g) => (parseGranularity(g) as { granularity: Granularity }).granularity),
      ...(m.session !== undefined ? { session: { gapMs: parseDuration(m.session.gap)! } } : {}),
      allowedLatenessMs: parseDuration(m.allowedLateness)!,
      retention: resolveRetention(raw.retention, m.retention),
      ...(event !== undefined ? { event } : {}),
    })),
  };
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}

/** Parses metric definitions from text. `source` names the file in error messages. */
export function parseMetricDefinitions(text: string, source = 'metrics.yaml'): MetricDefinitions {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const where = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${where(e.pos[0])} ${e.message.split('\n')[0]}`);
  }
  const result = fileSchema.safeParse(doc.toJS());
  if (result.success) return normalize(result.data, source, doc, text);
  const messages = result.error.issues.slice(0, 5).map((issue) => {
    // Point at the deepest node that exists on the issue's path.
    let node: unknown = undefined;
    for (let depth = issue.path.length; depth >= 0 && !isNode(node); depth--) {
      node = doc.getIn(issue.path.slice(0, depth) as unknown[], true);
    }
    const offset = isNode(node) ? ((node as YamlNode).range?.[0] ?? 0) : 0;
    const path = formatPath(issue.path);
    return `${where(offset)} ${path ? `${path}: ` : ''}${issue.message}`;
  });
  const more = result.error.issues.length > 5 ? ` (and ${result.error.issues.length - 5} more)` : '';
  throw new ConfigError(`invalid metric definitions: ${messages.join('; ')}${more}`);
}

export function loadMetricDefinitions(file: string): MetricDefinitions {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `metric definitions not found: ${file} (set --metrics or LK_METRICS)`
        : `cannot read metric definitions ${file}: ${code ?? String(err)}`,
    );
  }
  return parseMetricDefinitions(text, file);
}

/** The largest window plus allowed lateness over all metrics: the minimum useful dedup horizon. */
export function maxWindowPlusLatenessMs(defs: MetricDefinitions): number {
  let max = 0;
  for (const m of defs.metrics) {
    for (const g of m.granularities) max = Math.max(max, granularityMs(g) + m.allowedLatenessMs);
    // A session's events lie at least this close to its end while it is open (sessionRule.ts); a
    // longer session's first events may be older: docs/metrics.md, "Sessions", says to raise the horizon.
    if (m.session !== undefined) max = Math.max(max, m.session.gapMs + m.allowedLatenessMs);
  }
  return max;
}
