/// <reference lib="dom" />
/**
 * The GraphQL explorer served at /graphql to browsers: GraphiQL 3 (React 18, CodeMirror 5),
 * bundled at build time, so it works on a machine with no internet access. Queries and mutations
 * go over HTTP POST, subscriptions over graphql-ws on the same URL; the token of a server started
 * with --auth-token is sent with both (auth.ts). The README's examples are preloaded as tabs, and
 * `?query=` (plus `variables=`, `operationName=`) in the address opens that query.
 */
import { GraphiQL, type GraphiQLProps } from 'graphiql';
import { getOperationAST, parse } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { askForToken, authHeaders, currentToken, graphqlUrl, graphqlWsUrl, readTokenFromFragment } from './auth.ts';
import { EXAMPLE_TABS } from './examples.ts';

type Fetcher = GraphiQLProps['fetcher'];
type FetcherParams = Parameters<Fetcher>[0];

let ws: Client | undefined;

function wsClient(): Client {
  ws ??= createClient({
    url: graphqlWsUrl(),
    connectionParams: () => {
      const token = currentToken();
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    lazy: true,
    retryAttempts: 3,
  });
  return ws;
}

function isSubscription(params: FetcherParams): boolean {
  try {
    return getOperationAST(parse(params.query), params.operationName ?? undefined)?.operation === 'subscription';
  } catch {
    return false; // the server says what is wrong with it
  }
}

async function post(params: FetcherParams, headers: Record<string, string>): Promise<unknown> {
  for (;;) {
    const res = await fetch(graphqlUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders(), ...headers },
      body: JSON.stringify(params),
    });
    if (res.status === 401 && !headers.authorization && !headers.Authorization) {
      await askForToken('The GraphQL endpoint answered 401: enter the bearer token to run queries.');
      continue;
    }
    return res.json();
  }
}

const fetcher: Fetcher = (params, opts) => {
  if (!isSubscription(params)) return post(params, (opts?.headers ?? {}) as Record<string, string>) as ReturnType<Fetcher>;
  const iterator = wsClient().iterate({
    query: params.query,
    variables: params.variables ?? undefined,
    operationName: params.operationName ?? undefined,
  });
  return iterator as unknown as ReturnType<Fetcher>;
};

function fromAddress(): { query?: string; variables?: string; operationName?: string } {
  const q = new URLSearchParams(location.search);
  return {
    ...(q.get('query') ? { query: q.get('query')! } : {}),
    ...(q.get('variables') ? { variables: q.get('variables')! } : {}),
    ...(q.get('operationName') ? { operationName: q.get('operationName')! } : {}),
  };
}

function logo() {
  return createElement(
    GraphiQL.Logo,
    null,
    createElement('a', { href: './', className: 'lk-explorer-home', title: 'back to the dashboard' }, 'lambda-kappa'),
    createElement('span', { className: 'lk-explorer-sub' }, ' GraphQL explorer'),
  );
}

readTokenFromFragment();
const root = document.getElementById('explorer');
if (root) {
  createRoot(root).render(
    createElement(
      GraphiQL,
      {
        fetcher,
        defaultTabs: EXAMPLE_TABS,
        ...fromAddress(),
        defaultEditorToolsVisibility: true,
        shouldPersistHeaders: false,
        defaultTheme: 'light',
      },
      logo(),
    ),
  );
}
