/**
 * GraphQL execution through graphql-jit, plugged into Apollo Server 5 through its documented
 * `gateway` interface (GatewayInterface: `load()` returns `{ executor }`; the schema is handed
 * over with `onSchemaLoadOrUpdate`). Apollo keeps everything around execution: parsing and its
 * document cache, validation (introspection switch included), the plugins (depth and cost limits
 * in didResolveOperation), error formatting (formatError), HTTP status codes and serialization.
 *
 * Why: graphql-js interprets the query for every field of every answer (argument lookup, field
 * execution, completion). A 24 h minute `series` is 1,440 windows x 5 fields = 7,200 field
 * completions per answer, and that interpretation was most of the server's CPU. graphql-jit
 * compiles a query once into straight-line JavaScript, and the compiled function runs the same
 * resolvers and scalar serializers.
 *
 * What goes through graphql-js `execute` instead, so that the answer is graphql-js's to the byte:
 * - every answer that has an error. graphql-jit's errors differ from graphql-js's (no AST nodes,
 *   so Apollo would not recognise variable coercion errors as BAD_USER_INPUT; no `extensions`
 *   object when the thrown error has none, which Apollo's error formatting does not expect).
 *   The request is executed again by graphql-js, which gives the messages, paths, codes and
 *   partial data the clients and tests rely on. The resolvers only read (the second run answers
 *   from the request's same view snapshot), so running them twice changes nothing but time, and
 *   errors are not the hot path;
 * - operations other than queries (a subscription sent over HTTP) and queries graphql-jit
 *   cannot compile;
 * - introspection (`__schema`, `__type` at the root): rare, and graphql-js is the reference for it.
 */
import type { ApolloServerOptionsWithGateway } from '@apollo/server';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import {
  execute,
  printSchema,
  Kind,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql/index.js';

type GatewayInterface = ApolloServerOptionsWithGateway<Record<string, unknown>>['gateway'];
type GatewayLoadResult = Awaited<ReturnType<GatewayInterface['load']>>;
export type GatewayExecutor = NonNullable<GatewayLoadResult['executor']>;

/** The compiled form of one (document, operation name), or why there is none. */
type CompiledOperation = { kind: 'jit'; query: CompiledQuery['query'] } | { kind: 'graphql-js'; reason: string };

/**
 * How a request was executed (counted so that operators and tests can see the jit at work):
 * `jit` answered by the compiled query; `jit_errors_graphql_js` compiled, had errors, answered by
 * graphql-js; `graphql_js` never tried with graphql-jit (not a query, introspection, not compilable).
 */
export type ExecutedBy = 'jit' | 'jit_errors_graphql_js' | 'graphql_js';

export interface JitExecutorOptions {
  /** Called once per request with how it was executed (the server counts it in /metrics). */
  onExecuted?: (by: ExecutedBy) => void;
}

function hasIntrospectionRoot(set: SelectionSetNode, document: DocumentNode, seen = new Set<string>()): boolean {
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) {
      if (s.name.value === '__schema' || s.name.value === '__type') return true;
    } else if (s.kind === Kind.INLINE_FRAGMENT) {
      if (hasIntrospectionRoot(s.selectionSet, document, seen)) return true;
    } else if (!seen.has(s.name.value)) {
      seen.add(s.name.value);
      const fragment = document.definitions.find((d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === s.name.value);
      if (fragment && fragment.kind === Kind.FRAGMENT_DEFINITION && hasIntrospectionRoot(fragment.selectionSet, document, seen))
        return true;
    }
  }
  return false;
}

/**
 * Compiled queries, cached per document and operation name. Keyed by the DocumentNode object:
 * Apollo's document store hands out the same parsed document for the same query text, and a
 * WeakMap lets an entry go when Apollo evicts the document, so the cache is bounded by Apollo's.
 */
export class JitQueryCache {
  private readonly byDocument = new WeakMap<DocumentNode, Map<string, CompiledOperation>>();
  /** Requests per way of execution, and queries compiled (one per document and operation name). */
  readonly stats: Record<ExecutedBy, number> & { compiled: number } = { jit: 0, jit_errors_graphql_js: 0, graphql_js: 0, compiled: 0 };

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly options: JitExecutorOptions = {},
  ) {}

  executed(by: ExecutedBy): void {
    this.stats[by]++;
    this.options.onExecuted?.(by);
  }

  get(document: DocumentNode, operation: OperationDefinitionNode, operationName: string | null | undefined): CompiledOperation {
    let perOperation = this.byDocument.get(document);
    if (!perOperation) {
      perOperation = new Map();
      this.byDocument.set(document, perOperation);
    }
    // A key no operation name can be ('' is not a valid GraphQL name).
    const key = operationName ?? '';
    let compiled = perOperation.get(key);
    if (!compiled) {
      compiled = this.compile(document, operation, operationName);
      perOperation.set(key, compiled);
    }
    return compiled;
  }

  private compile(document: DocumentNode, operation: OperationDefinitionNode, operationName: string | null | undefined): CompiledOperation {
    if (operation.operation !== 'query') return { kind: 'graphql-js', reason: `${operation.operation} operation` };
    if (hasIntrospectionRoot(operation.selectionSet, document)) return { kind: 'graphql-js', reason: 'introspection' };
    let result: CompiledQuery | ExecutionResult;
    try {
      // graphql-jit's default options keep graphql-js's semantics (leaf serialization included).
      result = compileQuery(this.schema, document, operationName ?? undefined);
    } catch (err) {
      return { kind: 'graphql-js', reason: `graphql-jit threw: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (!isCompiledQuery(result)) {
      return { kind: 'graphql-js', reason: `graphql-jit refused: ${result.errors?.map((e) => e.message).join('; ') ?? 'unknown'}` };
    }
    this.stats.compiled++;
    return { kind: 'jit', query: result.query };
  }
}

export interface ExecuteArgs {
  document: DocumentNode;
  /** Undefined when Apollo could not pick one (graphql-js then says why). */
  operation: OperationDefinitionNode | undefined;
  /** The operation name the client asked for (what graphql-js `execute` is given). */
  operationName: string | null | undefined;
  variables: Record<string, unknown> | undefined;
  contextValue: unknown;
}

/** Executes one request: the compiled query when possible, graphql-js for the cases above. */
export async function executeWithJit(schema: GraphQLSchema, cache: JitQueryCache, args: ExecuteArgs): Promise<ExecutionResult> {
  const compiled = args.operation ? cache.get(args.document, args.operation, args.operationName) : undefined;
  if (compiled?.kind === 'jit') {
    const result = await compiled.query(undefined, args.contextValue, args.variables ?? {});
    if (!result.errors || result.errors.length === 0) {
      cache.executed('jit');
      return result as ExecutionResult;
    }
    cache.executed('jit_errors_graphql_js');
  } else {
    cache.executed('graphql_js');
  }
  return execute({
    schema,
    document: args.document,
    contextValue: args.contextValue,
    variableValues: args.variables,
    operationName: args.operationName,
  });
}

/**
 * A GatewayInterface that serves one fixed schema and executes with graphql-jit. Apollo calls
 * `onSchemaLoadOrUpdate` then `load` once at start; the schema never changes afterwards.
 */
export function jitGateway(schema: GraphQLSchema, cache: JitQueryCache): GatewayInterface {
  const executor: GatewayExecutor = async (rc) =>
    executeWithJit(schema, cache, {
      document: rc.document,
      // Typed as always present, but Apollo calls the executor without one too (unknown name).
      operation: rc.operation as OperationDefinitionNode | undefined,
      operationName: rc.request.operationName,
      variables: rc.request.variables,
      contextValue: rc.context,
    });
  return {
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: printSchema(schema) });
      return () => {};
    },
    async load() {
      return { executor };
    },
    async stop() {},
  };
}
