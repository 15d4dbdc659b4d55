/// <reference lib="dom" />
/**
 * The bearer token for servers started with --auth-token. The pages load without it; their
 * GraphQL requests (HTTP and WebSocket) carry it. It comes from the URL fragment
 * (`http://host:4000/#token=...`: a fragment never reaches the server or its logs; it is removed
 * from the address bar once read) or from the prompt shown when the server answers 401, and is kept
 * in sessionStorage (this tab only, shared by the dashboard and the explorer).
 */
import { h } from './dom.ts';

const STORAGE_KEY = 'lk.token';

export function readTokenFromFragment(): void {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return;
  setToken(token);
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
}

export function currentToken(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage disabled: the token lives as long as the page does.
  }
}

export function authHeaders(): Record<string, string> {
  const token = currentToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The GraphQL endpoint, relative to the page (works behind a reverse proxy's path prefix too). */
export function graphqlUrl(): string {
  return new URL('graphql', location.href).href;
}

export function graphqlWsUrl(): string {
  const url = new URL('graphql', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = '';
  return url.href;
}

let pending: Promise<string> | undefined;

/** Asks for the token (one dialog at a time, whoever asks); resolves once one is entered. */
export function askForToken(why: string): Promise<string> {
  pending ??= new Promise<string>((resolve) => {
    const input = h('input', {
      type: 'password',
      name: 'token',
      autocomplete: 'off',
      placeholder: 'bearer token',
      'aria-label': 'bearer token',
      required: true,
      minlength: 16,
    });
    const form = h(
      'form',
      { class: 'lk-token-dialog', 'data-testid': 'token-dialog' },
      h('h2', null, 'This server needs a token'),
      h('p', null, why),
      h(
        'p',
        { class: 'lk-token-hint' },
        'It was started with --auth-token (LK_SERVE_AUTH_TOKEN). The token stays in this browser tab; you can also open the page as ',
        h('code', null, `${location.origin}${location.pathname}#token=…`),
        '.',
      ),
      input,
      h('button', { type: 'submit' }, 'Use token'),
    );
    const backdrop = h('div', { class: 'lk-token-backdrop' }, form);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      setToken(token);
      backdrop.remove();
      pending = undefined;
      resolve(token);
    });
    document.body.appendChild(backdrop);
    input.focus();
  });
  return pending;
}
