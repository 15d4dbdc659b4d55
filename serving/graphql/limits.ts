/**
 * The limits that bound the work of one request, checked before it runs (HTTP queries and every
 * subscription alike). Each refusal has its code and names the flag that sets the limit.
 *
 * - Shape, checked on the parsed document before validation (graphql-js's validation of a
 *   document with thousands of aliased fields is itself quadratic): at most `--max-aliases`
 *   aliased fields in the document, at most `--max-root-fields` root fields per operation
 *   (fragments expanded).
 * - Depth: nested selection sets through fragments (`--max-depth`).
 * - Cost (`--max-cost`), an estimate of the work and of the size of the answer:
 *   - each call of one of serving's resolvers (every root field, `WindowValue.partitions`, the
 *     mutations, the subscription) costs `--resolver-cost`, every other field 1;
 *   - a list field multiplies the cost of its selection by the length it can return: `series` by
 *     its number of windows (one day of minute windows is 1,440; `seriesColumns` alike, each of
 *     its columns holding one value per window), `topKeys` by `limit`, `metrics` by the number of
 *     metrics, and the smaller lists (per partition, per key) by fixed bounds;
 *   - resolvers that walk every key of a metric (`topKeys`, `total` without a key,
 *     `reconciliation`, `versionDiff`) add the windows they walk (keys held x windows in the
 *     range) / SCAN_WINDOWS_PER_UNIT;
 *   - the query text costs one unit per TEXT_BYTES_PER_UNIT bytes (parsing and validating it).
 *   Aliases do not escape it: ten aliased series cost ten times one; nor do fragments.
 *
 * Fragments are measured once each (memoised), so a document whose fragments spread each other
 * many times over is measured in time linear in its size, not in the size of its expansion.
 */
import {
  getNamedType,
  isObjectType,
  Kind,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type GraphQLObjectType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql/index.js';
import { granularityMs, granularityNameOf, type Granularity } from '../../services/metrics/definitions.ts';
import { maxRangeMsOf, parseGranularityArgument } from './granularityScalar.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode, requestError } from './errors.ts';

/** Assumed lengths of the lists whose size the arguments do not say. */
const LIST_BOUNDS: Record<string, number> = {
  partitions: 32,
  keys: 1000,
  instances: 16,
  droppedLate: 32,
  cut: 32,
  processingTimes: 32,
  granularities: 3,
  unreadable: 16,
  byReason: 64,
};

/**
 * Windows a key-walking resolver reads per cost unit. Measured (docs/serving-layer.md, Limits):
 * topKeys reads about 30 merged windows per microsecond once the merges are cached, and a cost
 * unit is about one value of an answer (0.1-0.3 us of serialization).
 */
export const SCAN_WINDOWS_PER_UNIT = 32;
/** Bytes of query text per cost unit (parsing and validating a document is linear in its size). */
export const TEXT_BYTES_PER_UNIT = 10;

/** The root fields that walk every key of a metric (`total` only without a key). */
const SCANNING_FIELDS = new Set(['topKeys', 'total', 'reconciliation', 'versionDiff']);

type Variables = Record<string, unknown> | undefined;

/** How many keys a version holds for a metric and granularity (0 when it is not open). */
export type KeyCounter = (version: string | undefined, metric: string, granularity: Granularity) => number;

export interface LimitsOptions {
  schema: GraphQLSchema;
  config: Pick<
    ServeConfig,
    'maxAliases' | 'maxRootFields' | 'maxDepth' | 'maxCost' | 'resolverCost' | 'maxRangeMs' | 'maxTopKeys' | 'metrics'
  >;
  /** `Type.field` of every field whose resolver is serving's own (each call costs --resolver-cost). */
  resolvedFields: ReadonlySet<string>;
  keyCount: KeyCounter;
}

function argValue(node: ValueNode | undefined, variables: Variables): unknown {
  if (!node) return undefined;
  switch (node.kind) {
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.STRING:
    case Kind.ENUM:
    case Kind.BOOLEAN:
      return node.value;
    default:
      return undefined;
  }
}

function arg(field: FieldNode, name: string, variables: Variables): unknown {
  return argValue(field.arguments?.find((a) => a.name.value === name)?.value, variables);
}

function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  const map = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) map.set(d.name.value, d);
  return map;
}

/**
 * Sums `measure` over the fields of a selection set, fragments expanded: a fragment's sum is
 * computed once (memo), and a fragment met again while it is being measured (a cycle, which
 * validation refuses later) counts 0.
 */
function sumOverFields(
  set: SelectionSetNode,
  fragments: Map<string, FragmentDefinitionNode>,
  memo: Map<string, number>,
  measure: (field: FieldNode) => number,
  combine: (a: number, b: number) => number = (a, b) => a + b,
): number {
  let total = 0;
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) total = combine(total, measure(s));
    else if (s.kind === Kind.INLINE_FRAGMENT) total = combine(total, sumOverFields(s.selectionSet, fragments, memo, measure, combine));
    else {
      const name = s.name.value;
      let value = memo.get(name);
      if (value === undefined) {
        const f = fragments.get(name);
        memo.set(name, 0); // in progress: a cycle counts 0
        value = f ? sumOverFields(f.selectionSet, fragments, memo, measure, combine) : 0;
        memo.set(name, value);
      }
      total = combine(total, value);
    }
  }
  return total;
}

/** Aliased fields in the whole document, as written (fragments once). */
export function aliasCount(document: DocumentNode): number {
  let n = 0;
  const walk = (set: SelectionSetNode | undefined): void => {
    if (!set) return;
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) {
        if (s.alias) n++;
        walk(s.selectionSet);
      } else if (s.kind === Kind.INLINE_FRAGMENT) walk(s.selectionSet);
    }
  };
  for (const d of document.definitions)
    if (d.kind === Kind.OPERATION_DEFINITION || d.kind === Kind.FRAGMENT_DEFINITION) walk(d.selectionSet);
  return n;
}

/** Root fields of an operation, fragments expanded. */
export function rootFieldCount(operation: OperationDefinitionNode, fragments: Map<string, FragmentDefinitionNode>): number {
  return sumOverFields(operation.selectionSet, fragments, new Map(), () => 1);
}

/**
 * Refuses a document with too many aliases or root fields (HTTP 400), before validation. Cheap:
 * linear in the document's size.
 */
export function enforceShape(document: DocumentNode, config: Pick<ServeConfig, 'maxAliases' | 'maxRootFields'>): void {
  const aliases = aliasCount(document);
  if (aliases > config.maxAliases) {
    throw requestError(
      ErrorCode.TOO_MANY_ALIASES,
      `the query has ${aliases} aliased fields; the limit is ${config.maxAliases} (--max-aliases): ask for one value per field, or send several requests`,
      400,
    );
  }
  const fragments = fragmentsOf(document);
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const roots = rootFieldCount(d, fragments);
    if (roots > config.maxRootFields) {
      throw requestError(
        ErrorCode.TOO_MANY_ROOT_FIELDS,
        `the ${d.name ? `operation ${d.name.value}` : 'operation'} has ${roots} root fields; the limit is ${config.maxRootFields} (--max-root-fields)`,
        400,
      );
    }
  }
}

/**
 * Nesting depth. `ofType` (introspection's __Type.ofType, the type a list or non-null wraps) adds
 * no level: it is one object, never a list, and the chain ends after a few wrappers, so it cannot
 * multiply an answer; every introspection query (GraphiQL's, graphql-codegen's) nests it seven
 * deep to unwrap [Type!]!, and would otherwise need --max-depth 15. Lists that could cycle through
 * the schema (fields, types, interfaces) still count.
 */
export function queryDepth(
  set: SelectionSetNode,
  fragments: Map<string, FragmentDefinitionNode>,
  memo = new Map<string, number>(),
): number {
  return sumOverFields(
    set,
    fragments,
    memo,
    (f) => (f.selectionSet ? (f.name.value === 'ofType' ? 0 : 1) + queryDepth(f.selectionSet, fragments, memo) : 1),
    Math.max,
  );
}

/** Windows of a granularity whose start is in [from, to) (at most the range cap), from a field's arguments. */
function windowsOf(field: FieldNode, g: Granularity, config: LimitsOptions['config'], variables: Variables): number {
  const size = granularityMs(g);
  const cap = Math.ceil(maxRangeMsOf(config.maxRangeMs, g) / size);
  const from = Date.parse(String(arg(field, 'from', variables)));
  const to = Date.parse(String(arg(field, 'to', variables)));
  if (Number.isNaN(from) || Number.isNaN(to) || to < from) return cap;
  return Math.max(1, Math.min(cap, Math.ceil((to - from) / size)));
}

function granularityArg(field: FieldNode, variables: Variables, name = 'granularity'): Granularity | undefined {
  const g = arg(field, name, variables);
  return g === undefined || g === null ? undefined : parseGranularityArgument(String(g));
}

/** `total` without granularity rolls up the coarsest windows that tile [from, to). */
function tilingGranularity(field: FieldNode, variables: Variables): Granularity {
  const from = Date.parse(String(arg(field, 'from', variables)));
  const to = Date.parse(String(arg(field, 'to', variables)));
  for (const g of ['day', 'hour'] as const) if (from % granularityMs(g) === 0 && to % granularityMs(g) === 0) return g;
  return 'minute';
}

function listFactor(field: FieldNode, config: LimitsOptions['config'], variables: Variables): number {
  const name = field.name.value;
  // seriesColumns answers the same windows as series, one array element per window and column:
  // each column costs its number of windows, as each field of series does.
  if (name === 'series' || name === 'seriesColumns')
    return windowsOf(field, granularityArg(field, variables) ?? 'minute', config, variables);
  // One hopping window per advance in the range (each reads size / advance tumbling windows).
  if (name === 'hopping') return windowsOf(field, granularityArg(field, variables, 'advance') ?? 'minute', config, variables);
  // Sessions: at most one per gap of the range (sessions of one key are at least a gap apart).
  if (name === 'sessions') {
    const def = config.metrics.metrics.find((m) => m.name === arg(field, 'metric', variables));
    // A reversed range is refused by the resolver (INVALID_RANGE) before it reads anything.
    if (Date.parse(String(arg(field, 'from', variables))) > Date.parse(String(arg(field, 'to', variables)))) return 1;
    return def?.session ? windowsOf(field, granularityNameOf(def.session.gapMs), config, variables) : 1;
  }
  if (name === 'windowUpdated') return 1;
  if (name === 'topKeys') {
    const limit = Number(arg(field, 'limit', variables) ?? 10);
    return Number.isFinite(limit) && limit > 0 ? Math.min(limit, config.maxTopKeys) : 10;
  }
  if (name === 'metrics') return config.metrics.metrics.length;
  return LIST_BOUNDS[name] ?? 1;
}

/** Windows a key-walking root field reads: keys held x windows in its range (0 for other fields). */
function scannedWindows(field: FieldNode, options: LimitsOptions, variables: Variables): number {
  const name = field.name.value;
  if (!SCANNING_FIELDS.has(name)) return 0;
  if (name === 'total' && (arg(field, 'key', variables) != null || arg(field, 'keyParts', variables) != null)) return 0;
  const metric = String(arg(field, 'metric', variables) ?? '');
  const g = granularityArg(field, variables) ?? tilingGranularity(field, variables);
  const windows = windowsOf(field, g, options.config, variables);
  const version = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const keys =
    name === 'versionDiff'
      ? options.keyCount(version(arg(field, 'a', variables)), metric, g) + options.keyCount(version(arg(field, 'b', variables)), metric, g)
      : options.keyCount(version(arg(field, 'version', variables)), metric, g);
  return keys * windows;
}

function childType(parent: GraphQLObjectType | undefined, field: FieldNode, schema: GraphQLSchema): GraphQLNamedType | undefined {
  const name = field.name.value;
  if (name === '__schema') return getNamedType(SchemaMetaFieldDef.type);
  if (name === '__type') return getNamedType(TypeMetaFieldDef.type);
  const def = parent?.getFields()[name];
  return def ? getNamedType(def.type) : schema.getType(name);
}

/** The estimated cost of an operation (see the module's comment), without the query text's share. */
export function queryCost(
  operation: OperationDefinitionNode,
  document: DocumentNode,
  options: LimitsOptions,
  variables: Variables,
): number {
  const { schema, config, resolvedFields } = options;
  const fragments = fragmentsOf(document);
  const root = schema.getRootType(operation.operation) ?? undefined;
  // Fragment costs depend on the type they apply to only through their type condition, so one memo per document does.
  const memo = new Map<string, number>();
  const costOf = (set: SelectionSetNode, parent: GraphQLObjectType | undefined): number =>
    sumOverFields(set, fragments, memo, (f) => {
      const own = parent && resolvedFields.has(`${parent.name}.${f.name.value}`) ? config.resolverCost : 1;
      const scan = parent === root ? scannedWindows(f, options, variables) / SCAN_WINDOWS_PER_UNIT : 0;
      if (!f.selectionSet) return own + scan;
      const type = childType(parent, f, schema);
      return own + scan + listFactor(f, config, variables) * costOf(f.selectionSet, type && isObjectType(type) ? type : undefined);
    });
  // Inline fragments and fragment spreads keep the parent type: this schema has no interfaces or unions.
  return Math.ceil(costOf(operation.selectionSet, root));
}

/** Cost units for the query text itself. */
export function textCost(query: string | undefined): number {
  return query === undefined ? 0 : Math.ceil(Buffer.byteLength(query) / TEXT_BYTES_PER_UNIT);
}

/**
 * Throws a coded error (HTTP 400) when the operation is too deep or too costly; returns its cost
 * (what the client's rate limit is charged).
 */
export function enforceLimits(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Variables,
  options: LimitsOptions,
  queryText?: string,
): number {
  const { config } = options;
  const depth = queryDepth(operation.selectionSet, fragmentsOf(document));
  if (depth > config.maxDepth) {
    throw requestError(ErrorCode.QUERY_TOO_DEEP, `query depth ${depth} exceeds the limit of ${config.maxDepth} (--max-depth)`, 400);
  }
  const cost = queryCost(operation, document, options, variables) + textCost(queryText);
  if (cost > config.maxCost) {
    throw requestError(
      ErrorCode.QUERY_TOO_COSTLY,
      `query cost ${cost} exceeds the limit of ${config.maxCost} (--max-cost); ask for fewer fields, a shorter range or a smaller limit`,
      400,
    );
  }
  return cost;
}
