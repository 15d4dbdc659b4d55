/** The executable schema: SDL (typeDefs.ts) plus resolvers, built with graphql-js alone. */
import {
  GraphQLError,
  GraphQLObjectType,
  GraphQLScalarType,
  buildSchema,
  type GraphQLFieldResolver,
  type GraphQLSchema,
} from 'graphql/index.js';
import { assert } from '../../services/errors.ts';
import type { WindowSubscriptions } from '../subscriptions.ts';
import { dateTimeScalar } from './dateTime.ts';
import { granularityScalar } from './granularityScalar.ts';
import {
  granularityOf,
  queryResolvers,
  snapshotFor,
  windowValueResolvers,
  keyTotalResolvers,
  percentileResolvers,
  keyArgument,
  metricDef,
  definitionsFor,
  checkGranularity,
  type GranularityName,
  type ServeContext,
} from './resolvers.ts';
import { typeDefs } from './typeDefs.ts';
import { mutationResolvers, versionQueryResolvers } from './versionResolvers.ts';

type Resolver = GraphQLFieldResolver<unknown, ServeContext, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Every call of one of serving's resolvers runs under the request's execution budget
 * (serving/graphql/executionBudget.ts): at once within a slice, after the request's earlier calls
 * and a yield otherwise, refused once the budget is spent.
 */
function gated(resolve: Resolver): Resolver {
  return (source, args, ctx, info) => ctx.work.run(() => resolve(source, args, ctx, info));
}

function attach(schema: GraphQLSchema, typeName: string, resolvers: Record<string, Resolver>): void {
  const type = schema.getType(typeName);
  assert(type instanceof GraphQLObjectType, `${typeName} is an object type`);
  const fields = type.getFields();
  for (const [name, resolve] of Object.entries(resolvers)) {
    const field = fields[name];
    assert(field !== undefined, `${typeName}.${name} exists in the schema`);
    field.resolve = gated(resolve);
  }
}

/** `Type.field` of every field whose resolver (or subscribe) is serving's own: each call costs --resolver-cost. */
export function resolvedFieldsOf(schema: GraphQLSchema): Set<string> {
  const out = new Set<string>();
  for (const type of Object.values(schema.getTypeMap())) {
    if (!(type instanceof GraphQLObjectType) || type.name.startsWith('__')) continue;
    for (const field of Object.values(type.getFields())) if (field.resolve || field.subscribe) out.add(`${type.name}.${field.name}`);
  }
  return out;
}

/**
 * SeriesColumns's columns: arrays the resolver built (serving/queries.ts seriesColumns), sent as
 * they are. One serializer call per column instead of a list completion per element: for a day of
 * minute windows that is most of the execution time (docs/serving-layer.md, Benchmark).
 */
const COLUMN_SCALARS = ['FloatColumn', 'IntColumn', 'BooleanColumn', 'SourceColumn'];

function columnScalar(scalar: GraphQLScalarType): void {
  scalar.serialize = (value: unknown) => {
    if (!Array.isArray(value)) throw new GraphQLError(`${scalar.name} must be an array, got ${typeof value}`);
    return value;
  };
  const outputOnly = () => {
    throw new GraphQLError(`${scalar.name} is an output type: it cannot be given as an argument`);
  };
  scalar.parseValue = outputOnly;
  scalar.parseLiteral = outputOnly;
}

export function buildServeSchema(subscriptions: WindowSubscriptions): GraphQLSchema {
  const schema = buildSchema(typeDefs);
  const dateTime = schema.getType('DateTime');
  assert(dateTime instanceof GraphQLScalarType, 'DateTime is a scalar');
  dateTime.serialize = dateTimeScalar.serialize;
  dateTime.parseValue = dateTimeScalar.parseValue;
  dateTime.parseLiteral = dateTimeScalar.parseLiteral;
  const granularity = schema.getType('Granularity');
  assert(granularity instanceof GraphQLScalarType, 'Granularity is a scalar');
  granularity.serialize = granularityScalar.serialize;
  granularity.parseValue = granularityScalar.parseValue;
  granularity.parseLiteral = granularityScalar.parseLiteral;
  for (const name of COLUMN_SCALARS) {
    const scalar = schema.getType(name);
    assert(scalar instanceof GraphQLScalarType, `${name} is a scalar`);
    columnScalar(scalar);
  }

  attach(schema, 'Query', { ...queryResolvers, ...versionQueryResolvers } as unknown as Record<string, Resolver>);
  attach(schema, 'Mutation', mutationResolvers as unknown as Record<string, Resolver>);
  attach(schema, 'WindowValue', windowValueResolvers as unknown as Record<string, Resolver>);
  attach(schema, 'KeyTotal', keyTotalResolvers as unknown as Record<string, Resolver>);
  attach(schema, 'Total', percentileResolvers as unknown as Record<string, Resolver>);
  attach(schema, 'Session', keyTotalResolvers as unknown as Record<string, Resolver>);
  attach(schema, 'HoppingWindow', { ...keyTotalResolvers, ...percentileResolvers } as unknown as Record<string, Resolver>);

  const subscription = schema.getSubscriptionType();
  assert(subscription, 'the schema has a Subscription type');
  const windowUpdated = subscription.getFields().windowUpdated!;
  windowUpdated.subscribe = async (
    _: unknown,
    args: {
      metric: string;
      key?: string | null;
      keyParts?: string[] | null;
      granularity?: GranularityName | null;
      version?: string | null;
    },
    ctx: ServeContext,
  ) => {
    const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
    const g = args.granularity ? granularityOf(args.granularity) : null;
    if (g) checkGranularity(def, g);
    const version = args.version ?? ctx.defaultVersion;
    await snapshotFor(ctx, version);
    const key = keyArgument(def, args, false);
    return subscriptions.iterate(ctx.registry.get(version)!, { metric: def.name, granularity: g, key }, ctx.beforeEvent);
  };
  windowUpdated.resolve = gated((payload: unknown) => payload);
  return schema;
}
