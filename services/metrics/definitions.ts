/**
 * Metric definitions: the one file that both engines are compiled from (see `compile.ts`).
 *
 * Loaded from YAML or JSON, validated with zod, and every error is reported with the file, line
 * and column of the offending node, so that `lk` can say "metrics.yaml:7:14 granularities[1]:
 * expected one of minute, hour, day, got "week"".
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode, isScalar, isSeq, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { parseDuration } from '../config/durations.ts';
import { filterNumber, type FilterValue } from './fieldSemantics.ts';

export const GRANULARITIES = ['minute', 'hour', 'day'] as const;
export type Granularity = (typeof GRANULARITIES)[number];
export const GRANULARITY_MS: Record<Granularity, number> = {
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
};

const FIELD = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/, 'must be an event field name (letters, digits, _ . -)');
const SCALAR = z.union([z.string(), z.number().refine(Number.isFinite, 'must be a finite number'), z.boolean()]);

const metricSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'must be lower_snake_case, start with a letter, at most 63 characters'),
    description: z.string().optional(),
    filter: z.record(FIELD, z.union([SCALAR, z.array(SCALAR).min(1, 'must list at least one accepted value')])).default({}),
    key: FIELD,
    value: FIELD.optional(),
    distinct: FIELD.optional(),
    granularities: z
      .array(z.enum(GRANULARITIES, { error: (issue) => `expected one of minute, hour, day, got ${JSON.stringify(issue.input)}` }))
      .min(1, 'must list at least one of minute, hour, day')
      .refine((g) => new Set(g).size === g.length, 'must not repeat a granularity'),
    allowedLateness: z.string().refine((s) => parseDuration(s) !== undefined, 'must be a duration like 30s, 5m, 2h or 1d'),
  })
  .strict();

const fileSchema = z
  .object({
    version: z.literal(1).default(1),
    metrics: z.array(metricSchema).min(1, 'must define at least one metric'),
  })
  .strict()
  .superRefine((file, ctx) => {
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
  readonly key: string;
  readonly value?: string;
  readonly distinct?: string;
  readonly granularities: readonly Granularity[];
  readonly allowedLatenessMs: number;
}

export interface MetricDefinitions {
  /** Where the definitions came from (a file path), for messages. */
  readonly source: string;
  /** The file's exact text, and its SHA-256: a job version is bound to one file (services/versions). */
  readonly text: string;
  readonly sha256: string;
  readonly metrics: readonly MetricDefinition[];
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
): FilterValue[] {
  const node = doc.getIn(['metrics', metric, 'filter', field], true);
  const nodes = isSeq(node) ? node.items : [node];
  return (Array.isArray(value) ? value : [value]).map((v, i) => {
    if (typeof v !== 'number') return v;
    const item = nodes[i];
    return filterNumber(isScalar(item) ? item.source : undefined, v);
  });
}

function normalize(raw: z.infer<typeof fileSchema>, source: string, doc: Document, text: string): MetricDefinitions {
  return {
    source,
    text,
    sha256: createHash('sha256').update(text).digest('hex'),
    metrics: raw.metrics.map((m, i) => ({
      name: m.name,
      ...(m.description !== undefined ? { description: m.description } : {}),
      filter: Object.fromEntries(Object.entries(m.filter).map(([f, v]) => [f, filterValues(doc, i, f, v)])),
      key: m.key,
      ...(m.value !== undefined ? { value: m.value } : {}),
      ...(m.distinct !== undefined ? { distinct: m.distinct } : {}),
      granularities: m.granularities,
      allowedLatenessMs: parseDuration(m.allowedLateness)!,
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
    for (const g of m.granularities) max = Math.max(max, GRANULARITY_MS[g] + m.allowedLatenessMs);
  }
  return max;
}
