/**
 * Query depth and cost limits, checked before execution (and for each subscription).
 *
 * Depth counts nested selection sets through fragments. Cost estimates the work and the size of
 * the answer: every field costs 1, and a list field multiplies the cost of its selection by the
 * length it can return: `series` by its number of windows (from the arguments: one day of minute
 * windows is 1,440; `seriesColumns` alike, each of its columns holding one value per window), `topKeys` by `limit`, `metrics` by the number of metrics, and the smaller
 * lists (per-partition, per-key) by fixed bounds. Aliases do not escape it: ten aliased series
 * cost ten times one.
 */
import {
  Kind,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql/index.js';
import { GRANULARITY_MS, type Granularity } from '../../services/metrics/definitions.ts';
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

type Variables = Record<string, unknown> | undefined;

function argValue(node: ValueNode | undefined, variables: Variables): unknown {
  if (!node) return undefined;
  switch (node.kind) {
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    case Kind.INT:
      return Number(node.value);
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.STRING:
    case Kind.ENUM:
      return node.value;
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

/** Fields of a selection set, fragments and inline fragments expanded. */
function fieldsOf(set: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, seen = new Set<string>()): FieldNode[] {
  const out: FieldNode[] = [];
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) out.push(s);
    else if (s.kind === Kind.INLINE_FRAGMENT) out.push(...fieldsOf(s.selectionSet, fragments, seen));
    else {
      const name = s.name.value;
      const f = fragments.get(name);
      // Validation rejects fragment cycles; `seen` only keeps this function safe on its own.
      if (f && !seen.has(name)) out.push(...fieldsOf(f.selectionSet, fragments, new Set([...seen, name])));
    }
  }
  return out;
}

/**
 * Nesting depth. `ofType` (introspection's __Type.ofType, the type a list or non-null wraps) adds
 * no level: it is one object, never a list, and the chain ends after a few wrappers, so it cannot
 * multiply an answer; every introspection query (GraphiQL's, graphql-codegen's) nests it seven
 * deep to unwrap [Type!]!, and would otherwise need --max-depth 15. Lists that could cycle through
 * the schema (fields, types, interfaces) still count.
 */
export function queryDepth(set: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>): number {
  let max = 0;
  for (const f of fieldsOf(set, fragments)) {
    const d = f.selectionSet ? (f.name.value === 'ofType' ? 0 : 1) + queryDepth(f.selectionSet, fragments) : 1;
    if (d > max) max = d;
  }
  return max;
}

function listFactor(field: FieldNode, config: ServeConfig, variables: Variables): number {
  const name = field.name.value;
  // seriesColumns answers the same windows as series, one array element per window and column:
  // each column costs its number of windows, as each field of series does.
  if (name === 'series' || name === 'seriesColumns' || name === 'windowUpdated') {
    if (name === 'windowUpdated') return 1;
    const g = String(arg(field, 'granularity', variables) ?? 'MINUTE').toLowerCase() as Granularity;
    const size = GRANULARITY_MS[g] ?? GRANULARITY_MS.minute;
    const cap = Math.ceil((config.maxRangeMs[g] ?? config.maxRangeMs.minute) / size);
    const from = Date.parse(String(arg(field, 'from', variables)));
    const to = Date.parse(String(arg(field, 'to', variables)));
    if (Number.isNaN(from) || Number.isNaN(to) || to < from) return cap;
    return Math.max(1, Math.min(cap, Math.ceil((to - from) / size)));
  }
  if (name === 'topKeys') {
    const limit = Number(arg(field, 'limit', variables) ?? 10);
    return Number.isFinite(limit) && limit > 0 ? Math.min(limit, config.maxTopKeys) : 10;
  }
  if (name === 'metrics') return config.metrics.metrics.length;
  return LIST_BOUNDS[name] ?? 1;
}

export function queryCost(
  set: SelectionSetNode,
  fragments: Map<string, FragmentDefinitionNode>,
  config: ServeConfig,
  variables: Variables,
): number {
  let cost = 0;
  for (const f of fieldsOf(set, fragments)) {
    cost += 1;
    if (f.selectionSet) cost += listFactor(f, config, variables) * queryCost(f.selectionSet, fragments, config, variables);
  }
  return cost;
}

/** Throws a coded error (HTTP 400) when the operation is too deep or too costly. */
export function enforceLimits(document: DocumentNode, operation: OperationDefinitionNode, variables: Variables, config: ServeConfig): void {
  const fragments = fragmentsOf(document);
  const depth = queryDepth(operation.selectionSet, fragments);
  if (depth > config.maxDepth) {
    throw requestError(ErrorCode.QUERY_TOO_DEEP, `query depth ${depth} exceeds the limit of ${config.maxDepth} (--max-depth)`, 400);
  }
  const cost = queryCost(operation.selectionSet, fragments, config, variables);
  if (cost > config.maxCost) {
    throw requestError(
      ErrorCode.QUERY_TOO_COSTLY,
      `query cost ${cost} exceeds the limit of ${config.maxCost} (--max-cost); ask for fewer fields, a shorter range or a smaller limit`,
      400,
    );
  }
}
