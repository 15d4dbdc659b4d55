/**
 * Who may do what: the roles, the operations, and the one table that says which role may run
 * which operation. Every check (the HTTP route, the GraphQL plugin, the mutation resolvers, the
 * WebSocket subscriptions, the dashboard's `viewer` query) reads this table.
 */
export const ROLES = ['reader', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a request may ask for. `query` includes `viewer`; the mutations are one operation each. */
export const OPERATIONS = ['query', 'subscribe', 'metrics', 'promote', 'rollback', 'retire'] as const;
export type Operation = (typeof OPERATIONS)[number];

export const PERMISSIONS: Readonly<Record<Operation, readonly Role[]>> = {
  query: ['reader', 'admin'],
  subscribe: ['reader', 'admin'],
  metrics: ['reader', 'admin'],
  promote: ['admin'],
  rollback: ['admin'],
  retire: ['admin'],
};

/** How a caller was recognised. */
export type AuthSource = 'anonymous' | 'auth-token' | 'tokens-file' | 'jwt';

/** The caller of a request: a name for the audit lines, a role, and how it was recognised. */
export interface Principal {
  name: string;
  role: Role;
  via: AuthSource;
}

/** Without any source of tokens configured, serving is open: everyone is an admin (bind it to 127.0.0.1). */
export const ANONYMOUS: Principal = { name: 'anonymous', role: 'admin', via: 'anonymous' };

export function may(principal: Principal, operation: Operation): boolean {
  return PERMISSIONS[operation].includes(principal.role);
}

export function permissionsOf(principal: Principal): Operation[] {
  return OPERATIONS.filter((o) => may(principal, o));
}

/** The GraphQL mutation fields and the operation each one is. */
export const MUTATION_OPERATIONS: Readonly<Record<string, Operation>> = {
  promote: 'promote',
  rollback: 'rollback',
  retire: 'retire',
};
