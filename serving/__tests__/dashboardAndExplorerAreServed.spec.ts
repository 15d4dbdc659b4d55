/**
 * The pages on the serving port, over real HTTP: the dashboard at / and its assets (content
 * types, cache policy, validators, gzip, HEAD), nothing outside the bundle directory whatever the
 * path, the explorer for browsers at GET /graphql while GraphQL's own GET keeps answering
 * clients, the explorer's introspection query within the default limits, the pages loading
 * without the token while GraphQL still needs it, and a clear 503 when the bundle was not built.
 *
 * The bundle here is a small stand-in directory with the build's layout (the real build is what
 * dashboardInABrowser.spec.ts loads).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request } from 'node:http';
import { getIntrospectionQuery } from 'graphql/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { gql, startTestServer, type TestServer } from './fixtures/testServer.ts';

const TOKEN = 'dashboard-test-token-0123456789';
const SCRIPT = `console.log(${JSON.stringify('x'.repeat(2000))});\n`;

/** A raw GET (fetch would normalize `..` and decode nothing; this sends the path as written). */
function rawGet(
  url: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the dashboard and the explorer on the serving port', () => {
  const dir = tempDir('lk-serve-pages-');
  const bundle = join(dir.path, 'bundle');
  const version = uniqueName('pages')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-24);
  let server: TestServer;
  let secured: TestServer;
  let unbuilt: TestServer;

  beforeAll(async () => {
    mkdirSync(join(bundle, 'assets'), { recursive: true });
    writeFileSync(
      join(bundle, 'index.html'),
      '<!doctype html><title>dashboard</title><script type="module" src="assets/app-ABCD2345.js"></script>',
    );
    writeFileSync(join(bundle, 'explorer.html'), '<!doctype html><title>explorer</title>');
    writeFileSync(join(bundle, 'assets', 'app-ABCD2345.js'), SCRIPT);
    writeFileSync(join(bundle, 'assets', 'app-ABCD2345.js.gz'), gzipSync(SCRIPT));
    writeFileSync(join(bundle, 'assets', 'style-WXYZ6789.css'), 'body{}');
    writeFileSync(join(bundle, 'assets', 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(join(dir.path, 'secret.txt'), 'not for the web');
    const previous = process.env.LK_DASHBOARD_DIR;
    try {
      process.env.LK_DASHBOARD_DIR = bundle;
      server = await startTestServer(dir.path, { defaultVersion: version });
      secured = await startTestServer(dir.path, { defaultVersion: version, authToken: TOKEN });
      process.env.LK_DASHBOARD_DIR = join(dir.path, 'never-built');
      unbuilt = await startTestServer(dir.path, { defaultVersion: version });
    } finally {
      if (previous === undefined) delete process.env.LK_DASHBOARD_DIR;
      else process.env.LK_DASHBOARD_DIR = previous;
    }
  });

  afterAll(async () => {
    await Promise.all([server?.close(), secured?.close(), unbuilt?.close()]);
    dir.remove();
  });

  it('serves the dashboard page: HTML, revalidated every time, locked to its own origin', async () => {
    const res = await rawGet(server.url, '/', { accept: 'text/html' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.body.toString()).toContain('<title>dashboard</title>');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(res.headers['content-security-policy']).toMatch(/connect-src 'self'/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const again = await rawGet(server.url, '/', { 'if-none-match': String(res.headers.etag) });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    expect((await rawGet(server.url, '/index.html')).status).toBe(200);
  });

  it('serves hashed assets for a year, gzipped when accepted, HEAD without a body', async () => {
    const plain = await rawGet(server.url, '/assets/app-ABCD2345.js');
    expect(plain.status).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.toString()).toBe(SCRIPT);
    const gz = await rawGet(server.url, '/assets/app-ABCD2345.js', { 'accept-encoding': 'gzip, deflate' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toBe('accept-encoding');
    expect(gunzipSync(gz.body).toString()).toBe(SCRIPT);
    expect(gz.body.length).toBeLessThan(plain.body.length);
    const css = await rawGet(server.url, '/assets/style-WXYZ6789.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const icon = await rawGet(server.url, '/favicon.ico');
    expect(icon.status).toBe(200);
    expect(icon.headers['content-type']).toBe('image/svg+xml');
    expect(icon.headers['cache-control']).toBe('no-cache'); // not content-hashed
    const head = await rawGet(server.url, '/assets/app-ABCD2345.js', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(SCRIPT.length));
    expect(head.body.length).toBe(0);
  });

  it('never reaches outside the bundle directory', async () => {
    for (const path of [
      '/assets/../secret.txt',
      '/assets/..%2fsecret.txt',
      '/assets/..%2F..%2Fsecret.txt',
      '/assets/%2e%2e/secret.txt',
      '/assets/..\\secret.txt',
      '/assets/.hidden',
      '/assets/sub/app-ABCD2345.js',
      '/assets/app-ABCD2345.js.gz',
      '/assets/',
      '/assets/%00',
      '/../../secret.txt',
      '/secret.txt',
      '/bundle/index.html',
    ]) {
      const res = await rawGet(server.url, path);
      expect([404, 400], path).toContain(res.status);
      expect(res.body.toString(), path).not.toContain('not for the web');
    }
    expect((await rawGet(server.url, '/assets/app-ABCD2345.js', {}, 'DELETE')).status).toBe(405);
    expect((await rawGet(server.url, '/', {}, 'POST')).status).toBe(405);
  });

  it('answers a browser at /graphql with the explorer, and GraphQL clients with GraphQL', async () => {
    const page = await rawGet(server.url, '/graphql', { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' });
    expect(page.status).toBe(200);
    expect(page.body.toString()).toContain('<title>explorer</title>');
    // A shared link with ?query= opens the explorer with it (the page reads the address).
    expect((await rawGet(server.url, '/graphql?query=%7Bmetrics%7Bname%7D%7D', { accept: 'text/html' })).status).toBe(200);
    // A client's GET keeps its JSON answer.
    const get = await rawGet(server.url, '/graphql?query=%7Bmetrics%7Bname%7D%7D', { 'apollo-require-preflight': '1' });
    expect(get.status).toBe(200);
    expect(get.headers['content-type']).toMatch(/application\/json/);
    expect(JSON.parse(get.body.toString()).data.metrics.length).toBeGreaterThan(0);
    // Apollo's CDN landing page is gone: a GET without a query is an error, not HTML.
    const bare = await rawGet(server.url, '/graphql');
    expect(bare.headers['content-type']).not.toMatch(/text\/html/);
  });

  it("the explorer's introspection query passes the default depth and cost limits", async () => {
    // GraphiQL 3 asks exactly this (graphql-js's introspection query with these options).
    const query = getIntrospectionQuery({ inputValueDeprecation: true, schemaDescription: true, directiveIsRepeatable: true });
    const r = await gql(server.url, query);
    expect(r.errors).toBeUndefined();
    expect(r.status).toBe(200);
    expect((r.data as { __schema: { types: { name: string }[] } }).__schema.types.map((t) => t.name)).toContain('SeriesColumns');
    // The depth limit still counts every other level of an introspection query (Apollo's own rule
    // stops nesting `fields` three deep; this one stays under it).
    const deep = await gql(server.url, '{ __schema { types { fields { args { type { fields { args { type { name } } } } } } } } }');
    expect(deep.errors?.[0]?.extensions?.code, deep.raw).toBe('QUERY_TOO_DEEP');
  });

  it('with --auth-token the pages load without it, GraphQL and /metrics still need it', async () => {
    expect((await rawGet(secured.url, '/')).status).toBe(200);
    expect((await rawGet(secured.url, '/assets/app-ABCD2345.js')).status).toBe(200);
    expect((await rawGet(secured.url, '/graphql', { accept: 'text/html' })).status).toBe(200);
    expect((await gql(secured.url, '{ metrics { name } }')).status).toBe(401);
    expect((await gql(secured.url, '{ metrics { name } }', undefined, TOKEN)).status).toBe(200);
    expect((await rawGet(secured.url, '/metrics')).status).toBe(401);
    expect((await rawGet(secured.url, '/graphql?query=%7Bmetrics%7Bname%7D%7D', { 'apollo-require-preflight': '1' })).status).toBe(401);
  });

  it('without a build, the pages say what to run', async () => {
    for (const res of [await rawGet(unbuilt.url, '/'), await rawGet(unbuilt.url, '/graphql', { accept: 'text/html' })]) {
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      const text = res.body.toString();
      expect(text).toMatch(/npm run build/);
      expect(text.trim().split('\n')).toHaveLength(1);
    }
    expect((await rawGet(unbuilt.url, '/assets/app-ABCD2345.js')).status).toBe(404);
    // GraphQL itself is unaffected.
    expect((await gql(unbuilt.url, '{ metrics { name } }')).status).toBe(200);
  });
});
