/// <reference lib="dom" />
/**
 * GraphQL from the page: queries and mutations over HTTP POST (same origin), the live
 * subscription over graphql-ws on the same URL. A 401 (or a WebSocket closed with 4403) asks for
 * the bearer token once and carries on with it.
 */
import { createClient, type Client } from 'graphql-ws';
import { askForToken, authHeaders, currentToken, graphqlUrl, graphqlWsUrl } from './auth.ts';

export class GraphQLRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

interface Answer<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  for (;;) {
    let res: Response;
    try {
      res = await fetch(graphqlUrl(), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders() },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new GraphQLRequestError('lk serve does not answer (is it running?)', 'UNREACHABLE');
    }
    if (res.status === 401) {
      await askForToken(currentToken() ? 'The token was refused: enter the right one.' : 'Enter the bearer token to see the data.');
      continue;
    }
    let body: Answer<T>;
    try {
      body = (await res.json()) as Answer<T>;
    } catch {
      throw new GraphQLRequestError(`HTTP ${res.status} without a GraphQL answer`, undefined);
    }
    const first = body.errors?.[0];
    if (first) throw new GraphQLRequestError(first.message, first.extensions?.code);
    if (!body.data) throw new GraphQLRequestError(`HTTP ${res.status} without data`, undefined);
    return body.data;
  }
}

export type LiveState = 'connecting' | 'live' | 'offline';

/** The page's one WebSocket: reconnects for ever (with graphql-ws's backoff), reports its state. */
export function liveClient(onState: (state: LiveState) => void): Client {
  return createClient({
    url: graphqlWsUrl(),
    lazy: false,
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: () => true,
    connectionParams: () => {
      const token = currentToken();
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    on: {
      connecting: () => onState('connecting'),
      connected: () => onState('live'),
      closed: (event) => {
        onState('offline');
        if ((event as CloseEvent | undefined)?.code === 4403)
          void askForToken('The live updates were refused (WebSocket closed with 4403): enter the bearer token.');
      },
    },
    onNonLazyError: () => onState('offline'),
  });
}
