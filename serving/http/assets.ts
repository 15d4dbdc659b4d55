/**
 * The dashboard (/) and the GraphQL explorer (GET /graphql from a browser): static files that
 * `npm run build` bundles from npm packages into dist/dashboard/ (scripts/build-dashboard.mjs),
 * served from this port so that nothing is ever loaded from another host.
 *
 * Layout of the bundle directory: index.html, explorer.html, assets/<name>-<hash>.<ext> (content
 * hashed: cached for a year), assets/favicon.svg, and a .gz beside each large text file, sent to
 * clients that accept gzip. Only names of one path segment made of [A-Za-z0-9._-] are looked up,
 * so no request reaches outside the directory. The pages need no token to load (they hold no
 * data); the GraphQL requests they make do, when --auth-token is set (the pages ask for it).
 *
 * The directory is `LK_DASHBOARD_DIR`, else dist/dashboard under the repository: found from this
 * module's own location, which works for the sources (LK_FROM_SOURCE=1) and the build (dist/).
 * Without a bundle the pages answer 503 with what to run.
 */
import { createReadStream, existsSync, statSync, type Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** One path segment, no leading dot: nothing like `..`, `/`, `%2f` or a hidden file can match. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Names the build content-hashes (`dashboard-3FJX2K7Q.js`): their content never changes. */
const HASHED_NAME = /-[A-Z0-9]{8}\.[a-z0-9]+$/;

/**
 * Everything the pages load comes from this origin (the bundles inline their fonts as data:
 * URLs); GraphiQL and uPlot style elements inline, hence 'unsafe-inline' for styles only.
 * connect-src 'self' covers the page's own ws:// origin (graphql-ws subscriptions).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

/** The repository root: the nearest directory above this module holding package.json. */
function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

export function defaultDashboardDir(): string {
  const fromEnv = process.env.LK_DASHBOARD_DIR;
  return fromEnv ? resolve(fromEnv) : join(repositoryRoot(), 'dist', 'dashboard');
}

/** A browser navigating to the URL (as opposed to a GraphQL client's GET with ?query=). */
export function wantsHtml(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && /\btext\/html\b/.test(req.headers.accept ?? '');
}

export interface DashboardAssets {
  readonly dir: string;
  /** Answers /, /assets/<name> and /favicon.ico; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse, pathname: string): boolean;
  /** The GraphQL explorer page (GET /graphql from a browser). */
  explorer(req: IncomingMessage, res: ServerResponse): void;
}

function statFile(path: string): Stats | undefined {
  try {
    const s = statSync(path);
    return s.isFile() ? s : undefined;
  } catch {
    return undefined;
  }
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function dashboardAssets(dir: string = defaultDashboardDir()): DashboardAssets {
  const notBuilt = (res: ServerResponse, what: string) =>
    sendText(
      res,
      503,
      `the ${what} is not built (no ${dir}): run \`npm run build\` (or \`node scripts/build-dashboard.mjs\`) and reload\n`,
      { 'retry-after': '10', 'cache-control': 'no-store' },
    );

  /** Sends one file with its content type, validators and cache policy; gzip when accepted and prepared. */
  function sendFile(req: IncomingMessage, res: ServerResponse, path: string, immutable: boolean): boolean {
    const stats = statFile(path);
    if (!stats) return false;
    const ext = extname(path);
    const gzPath = `${path}.gz`;
    const gzStats = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) ? statFile(gzPath) : undefined;
    const etag = `"${stats.size.toString(36)}-${Math.floor(stats.mtimeMs).toString(36)}${gzStats ? '-gz' : ''}"`;
    const headers: Record<string, string> = {
      'content-type': CONTENT_TYPES[ext] ?? 'application/octet-stream',
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      etag,
      'x-content-type-options': 'nosniff',
      vary: 'accept-encoding',
    };
    if (ext === '.html') {
      headers['content-security-policy'] = CONTENT_SECURITY_POLICY;
      headers['referrer-policy'] = 'no-referrer';
      headers['x-frame-options'] = 'DENY';
    }
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    if (gzStats) headers['content-encoding'] = 'gzip';
    headers['content-length'] = String((gzStats ?? stats).size);
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    createReadStream(gzStats ? gzPath : path)
      .on('error', () => res.destroy())
      .pipe(res);
    return true;
  }

  function page(req: IncomingMessage, res: ServerResponse, file: string, what: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendText(res, 405, 'use GET\n', { allow: 'GET, HEAD' });
    if (!sendFile(req, res, join(dir, file), false)) notBuilt(res, what);
  }

  return {
    dir,
    handle(req, res, pathname) {
      if (pathname === '/' || pathname === '/index.html') {
        page(req, res, 'index.html', 'dashboard');
        return true;
      }
      const name = pathname === '/favicon.ico' ? 'favicon.svg' : pathname.startsWith('/assets/') ? pathname.slice(8) : undefined;
      if (name === undefined) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendText(res, 405, 'use GET\n', { allow: 'GET, HEAD' });
        return true;
      }
      if (!ASSET_NAME.test(name) || name.endsWith('.gz') || !sendFile(req, res, join(dir, 'assets', name), HASHED_NAME.test(name)))
        sendText(res, 404, `no asset ${name}\n`);
      return true;
    },
    explorer(req, res) {
      page(req, res, 'explorer.html', 'GraphQL explorer');
    },
  };
}
