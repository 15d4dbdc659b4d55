/**
 * Roles: a reader can query and subscribe; an admin can also promote, roll back and retire.
 * Every kind of caller against every operation, over HTTP and WebSocket:
 * - tokens from a tokens file (stored as sha256 and scrypt), --auth-token (an admin), JWTs from
 *   an identity provider (RS256 and ES256, keys from a JWKS served over HTTP on 127.0.0.1, the
 *   role in an array claim), and no token;
 * - refused JWTs: expired, signed by another key, alg none, HS256, another audience, another
 *   issuer, no role; each with its reason, never a crash;
 * - the audit lines of promote, rollback and retire: who, when, from which version to which,
 *   done or forbidden;
 * - the tokens file reloaded without a restart: a token added works, a token removed stops
 *   working, a broken file keeps the previous tokens (and says why).
 */
import { localState } from '../../test/sharedState.ts';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { pino } from 'pino';
import WebSocket from 'ws';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import type { Logger } from '../../services/observability/logger.ts';
import { ensureVersionRecord } from '../../services/versions/versionRecord.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { parseTokensFile, scryptEntry, sha256Entry } from '../auth/tokensFile.ts';
import { publishSpeedRows, publishSyntheticBatchRun } from './fixtures/viewFixtures.ts';
import { METRICS, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);
const AUDIENCE = 'lk-serve';
const ISSUER = 'https://idp.example.test';
const SECRETS = {
  reader: 'reader-token-0123456789abcdef',
  admin: 'admin-token-0123456789abcdef',
  authToken: 'shared-auth-token-0123456789',
  added: 'added-token-0123456789abcdef',
};

interface Answer {
  status: number;
  code: string | undefined;
  message: string | undefined;
  data: Record<string, any> | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function post(url: string, query: string, token?: string, variables?: Record<string, unknown>): Promise<Answer> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] };
  return { status: res.status, code: body.errors?.[0]?.extensions?.code, message: body.errors?.[0]?.message, data: body.data };
}

/** Log lines written by the server, as objects. */
function captureLogs(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), lines };
}

function base64url(json: unknown): string {
  return Buffer.from(JSON.stringify(json)).toString('base64url');
}

describe('roles guard every operation', () => {
  const dir = tempDir('lk-serve-roles-');
  const layout = dataDirLayout(dir.path);
  const tag = uniqueName('r').toLowerCase().slice(-12);
  const va = `rla-${tag}`;
  const vb = `rlb-${tag}`;
  const vc = `rlc-${tag}`;
  const tokensPath = join(dir.path, 'tokens.yaml');
  const logs = captureLogs();
  let server: TestServer;
  let jwks: Server;
  let jwksFetches = 0;
  const keys: Record<'rs' | 'es' | 'other', { privateKey: CryptoKey; kid: string; alg: string }> = {} as never;
  const clients: Client[] = [];
  const publicJwks: Record<string, unknown> = {};

  async function jwt(
    key: 'rs' | 'es' | 'other',
    claims: Record<string, unknown>,
    opts: { audience?: string; issuer?: string; expiresAt?: number } = {},
  ): Promise<string> {
    const k = keys[key];
    return new SignJWT(claims)
      .setProtectedHeader({ alg: k.alg, kid: k.kid })
      .setIssuedAt()
      .setAudience(opts.audience ?? AUDIENCE)
      .setIssuer(opts.issuer ?? ISSUER)
      .setExpirationTime(opts.expiresAt ?? Math.floor(Date.now() / 1000) + 600)
      .sign(k.privateKey);
  }

  function writeTokens(entries: [string, string, string][]): void {
    // Written beside and renamed, as an operator's tooling would (a reader never sees half a file).
    const tmp = `${tokensPath}.tmp`;
    writeFileSync(
      tmp,
      `tokens:\n${entries.map(([name, role, hash]) => `  - name: ${name}\n    role: ${role}\n    hash: "${hash}"\n`).join('')}`,
    );
    renameSync(tmp, tokensPath);
  }

  let adminScrypt: string;
  beforeAll(async () => {
    for (const v of [va, vb, vc]) {
      await ensureVersionRecord(localState(layout.root), { version: v, topic: 'events', homePartitions: 2, metrics: METRICS });
      await publishSyntheticBatchRun(layout.root, v, { keys: 3, windows: 10, start: START });
    }
    adminScrypt = await scryptEntry(SECRETS.admin, Buffer.from('0123456789abcdef'));
    writeTokens([
      ['rita', 'reader', sha256Entry(SECRETS.reader)],
      ['adam', 'admin', adminScrypt],
    ]);
    const rs = await generateKeyPair('RS256', { extractable: true });
    const es = await generateKeyPair('ES256', { extractable: true });
    const other = await generateKeyPair('RS256', { extractable: true });
    keys.rs = { privateKey: rs.privateKey, kid: 'rs-1', alg: 'RS256' };
    keys.es = { privateKey: es.privateKey, kid: 'es-1', alg: 'ES256' };
    // Another key under the id of a trusted one: a forgery.
    keys.other = { privateKey: other.privateKey, kid: 'rs-1', alg: 'RS256' };
    publicJwks.rs = { ...(await exportJWK(rs.publicKey)), kid: 'rs-1', alg: 'RS256', use: 'sig' };
    publicJwks.es = { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256', use: 'sig' };
    const set = {
      keys: [
        { ...(await exportJWK(rs.publicKey)), kid: 'rs-1', alg: 'RS256', use: 'sig' },
        { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256', use: 'sig' },
      ],
    };
    jwks = createServer((req, res) => {
      jwksFetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(set));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/.well-known/jwks.json`;
    server = await startTestServer(
      dir.path,
      {
        defaultVersion: va,
        authToken: SECRETS.authToken,
        tokensFile: tokensPath,
        reloadPollMs: 100,
        jwt: { jwksFile: null, jwksUrl, audience: AUDIENCE, issuer: ISSUER, roleClaim: 'groups', nameClaim: 'email' },
      },
      { logger: logs.logger },
    );
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    await server?.close();
    await new Promise((r) => jwks?.close(r));
    dir.remove();
  });

  /** Every kind of caller, with the role it must be given. */
  async function callers(): Promise<{ who: string; token: string; role: 'READER' | 'ADMIN'; name: string; via: string }[]> {
    return [
      { who: 'tokens file, sha256', token: SECRETS.reader, role: 'READER', name: 'rita', via: 'tokens-file' },
      { who: 'tokens file, scrypt', token: SECRETS.admin, role: 'ADMIN', name: 'adam', via: 'tokens-file' },
      { who: '--auth-token', token: SECRETS.authToken, role: 'ADMIN', name: 'auth-token', via: 'auth-token' },
      {
        who: 'JWT RS256 reader',
        token: await jwt('rs', { email: 'jo@example.test', groups: ['staff', 'reader'] }),
        role: 'READER',
        name: 'jo@example.test',
        via: 'jwt',
      },
      {
        who: 'JWT ES256 admin',
        token: await jwt('es', { email: 'al@example.test', groups: ['reader', 'admin'] }),
        role: 'ADMIN',
        name: 'al@example.test',
        via: 'jwt',
      },
    ];
  }

  it('every caller is who it says, with its role: viewer, and queries for all', async () => {
    for (const c of await callers()) {
      const r = await post(server.url, '{ viewer { name role authenticated via permissions } metrics { name } }', c.token);
      expect(r.status, `${c.who}: ${r.message}`).toBe(200);
      expect(r.data!.viewer).toEqual({
        name: c.name,
        role: c.role,
        authenticated: true,
        via: c.via,
        permissions:
          c.role === 'ADMIN' ? ['query', 'subscribe', 'metrics', 'promote', 'rollback', 'retire'] : ['query', 'subscribe', 'metrics'],
      });
      expect(r.data!.metrics).toHaveLength(3);
    }
    // The JWKS was fetched once and cached, for every JWT verified.
    expect(jwksFetches).toBe(1);
  });

  it('no token: 401 on queries, 4403 on WebSocket', async () => {
    const r = await post(server.url, '{ metrics { name } }');
    expect(r.status).toBe(401);
    expect(r.message).toBe('missing bearer token: send Authorization: Bearer <token>');
    const closed = await new Promise<number>((resolve) => {
      const client = createClient({
        url: `${server.url.replace('http', 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: false,
        onNonLazyError: () => undefined,
        on: { closed: (e) => resolve((e as { code: number }).code) },
      });
      clients.push(client);
    });
    expect(closed).toBe(4403);
  });

  it('every caller can subscribe over WebSocket and receives the updates', async () => {
    const all = await callers();
    const received = all.map(
      (c) =>
        new Promise<unknown>((resolve, reject) => {
          const client = createClient({
            url: `${server.url.replace('http', 'ws')}/graphql`,
            webSocketImpl: WebSocket,
            retryAttempts: 0,
            connectionParams: { authorization: `Bearer ${c.token}` },
          });
          clients.push(client);
          client.subscribe(
            { query: `subscription { windowUpdated(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE) { key count } }` },
            { next: (v) => resolve(v.data), error: reject, complete: () => undefined },
          );
        }),
    );
    await eventually(async () => {
      const m = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${SECRETS.reader}` } })).text();
      return new RegExp(`^lk_serve_subscriptions ${all.length}$`, 'm').test(m) ? true : undefined;
    }, 'every subscription open');
    const log = testLog('lk-serve-roles');
    try {
      const row = {
        metric: 'clicks_by_ad',
        granularity: 'minute' as const,
        key: 'ad-1',
        windowStart: START,
        partition: 1,
        count: 1000,
        sum: 1,
        min: 1,
        max: 1,
        distinctSketch: null,
        misplaced: 0,
        throughOffset: 2_000_000,
        processingTime: START + 1,
      };
      await publishSpeedRows(log, va, [row], `lk-roles-${va}`);
    } finally {
      await log.close();
    }
    for (const [i, r] of (await Promise.all(received)).entries())
      expect(r, all[i]!.who).toEqual({ windowUpdated: { key: 'ad-1', count: expect.any(Number) } });
  });

  it('readers may not promote, roll back or retire: 403 FORBIDDEN, audited', async () => {
    const readers = (await callers()).filter((c) => c.role === 'READER');
    for (const c of readers) {
      for (const [query, action] of [
        [`mutation { promote(version: "${vb}", force: true) { version } }`, 'promote'],
        ['mutation { rollback(force: true) { version } }', 'rollback'],
        [`mutation { retire(version: "${vc}") { version } }`, 'retire'],
      ] as const) {
        const r = await post(server.url, query, c.token);
        expect(r.status, `${c.who} ${action}`).toBe(403);
        expect(r.code).toBe('FORBIDDEN');
        expect(r.message).toBe(
          `${action} needs the admin role; ${c.name} has the reader role (its token's role: --tokens-file, or the JWT's --jwt-role-claim)`,
        );
        const line = logs.lines.findLast((l) => l.audit === true && l.action === action);
        expect(line).toMatchObject({ audit: true, action, outcome: 'forbidden', who: { name: c.name, role: 'reader', via: c.via } });
        expect(Date.parse(line!.at as string)).toBeGreaterThan(Date.now() - 60_000);
      }
    }
    // Nothing changed.
    expect((await post(server.url, '{ versions { default } }', SECRETS.reader)).data!.versions.default).toBe(va);
  });

  it('admins promote, roll back and retire; each writes an audit line: who, when, from which version to which', async () => {
    const admins = (await callers()).filter((c) => c.role === 'ADMIN');
    for (const c of admins) {
      const p = await post(server.url, `mutation { promote(version: "${vb}", force: true) { version previous changed } }`, c.token);
      expect(p.data?.promote, `${c.who}: ${p.message}`).toEqual({ version: vb, previous: va, changed: true });
      // Every answer now comes from vb (the mutation returned once this server follows it).
      expect((await post(server.url, '{ versions { default } }', SECRETS.reader)).data!.versions.default).toBe(vb);
      expect(logs.lines.findLast((l) => l.audit === true)).toMatchObject({
        action: 'promote',
        who: { name: c.name, role: 'admin', via: c.via },
        from: va,
        to: vb,
        outcome: 'done',
      });
      const rb = await post(server.url, 'mutation { rollback(force: true) { version previous } }', c.token);
      expect(rb.data?.rollback, `${c.who}: ${rb.message}`).toEqual({ version: va, previous: vb });
      expect(logs.lines.findLast((l) => l.audit === true)).toMatchObject({ action: 'rollback', from: vb, to: va, outcome: 'done' });
    }
    // Retiring the default is refused (and audited); another version is retired.
    const admin = admins[0]!;
    const refused = await post(server.url, `mutation { retire(version: "${va}") { version } }`, admin.token);
    expect(refused.code).toBe('RETIREMENT_REFUSED');
    expect(refused.message).toMatch(/is the default version: promote another version first/);
    expect(logs.lines.findLast((l) => l.audit === true)).toMatchObject({ action: 'retire', from: va, outcome: 'refused' });
    const retired = await post(server.url, `mutation { retire(version: "${vc}") { version retiredAt deleted } }`, admin.token);
    expect(retired.data?.retire.version, retired.message).toBe(vc);
    expect(retired.data?.retire.deleted).toContain(`consumer group lk-speed-${vc}`);
    expect(logs.lines.findLast((l) => l.audit === true)).toMatchObject({
      action: 'retire',
      who: { name: admin.name },
      from: vc,
      to: null,
      outcome: 'done',
    });
    const versions = await post(server.url, '{ versions { versions { name state } } }', SECRETS.reader);
    expect(versions.data!.versions.versions.find((v: { name: string }) => v.name === vc)?.state).toBe('RETIRED');
  });

  it('refused JWTs: expired, another key, alg none, HS256, another audience or issuer, no role; each says why', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { email: 'x@example.test', groups: ['admin'] };
    const hs = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: 'rs-1' })
      .setAudience(AUDIENCE)
      .setIssuer(ISSUER)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode('a secret anyone could guess, 32 bytes+'));
    const cases: [string, string, RegExp][] = [
      ['expired', await jwt('rs', claims, { expiresAt: now - 3600 }), /^the token has expired$/],
      ['signed by another key', await jwt('other', claims), /^the token's signature does not verify$/],
      [
        'alg none',
        `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ ...claims, aud: AUDIENCE, iss: ISSUER, exp: now + 600 })}.`,
        /^the token's algorithm is not accepted \(only RS256, ES256\)$/,
      ],
      ['HS256', hs, /^the token's algorithm is not accepted \(only RS256, ES256\)$/],
      ['another audience', await jwt('rs', claims, { audience: 'another-service' }), /^the token's aud claim is not accepted/],
      ['another issuer', await jwt('rs', claims, { issuer: 'https://evil.example.test' }), /^the token's iss claim is not accepted/],
      [
        'no role',
        await jwt('es', { email: 'x@example.test', groups: ['staff'] }),
        /^the token's groups claim holds neither admin nor reader \(--jwt-role-claim\)$/,
      ],
    ];
    for (const [what, token, reason] of cases) {
      const r = await post(server.url, '{ viewer { role } }', token);
      expect(r.status, what).toBe(401);
      expect(r.code, what).toBe('UNAUTHENTICATED');
      expect(r.message, what).toMatch(reason);
      const p = await post(server.url, `mutation { promote(version: "${vb}", force: true) { version } }`, token);
      expect(p.status, what).toBe(401);
    }
    expect((await post(server.url, '{ versions { default } }', SECRETS.reader)).data!.versions.default).toBe(va);
  });

  it('keys from a JWKS file, reloaded on change (key rotation)', async () => {
    const jwksFile = join(dir.path, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [publicJwks.es] }));
    const other = await startTestServer(dir.path, {
      defaultVersion: va,
      reloadPollMs: 100,
      jwt: { jwksFile, jwksUrl: null, audience: AUDIENCE, issuer: null, roleClaim: 'groups', nameClaim: 'email' },
    });
    try {
      const es = await jwt('es', { email: 'al@example.test', groups: ['admin'] });
      const rs = await jwt('rs', { email: 'jo@example.test', groups: ['reader'] });
      expect((await post(other.url, '{ viewer { role } }', es)).data?.viewer).toEqual({ role: 'ADMIN' });
      const before = await post(other.url, '{ viewer { role } }', rs);
      expect(before.status).toBe(401);
      expect(before.message).toBe('no key of the JWKS matches the token');
      writeFileSync(jwksFile, JSON.stringify({ keys: [publicJwks.es, publicJwks.rs] }));
      await eventually(async () => ((await post(other.url, '{ viewer { role } }', rs)).status === 200 ? true : undefined), 'JWKS reloaded');
    } finally {
      await other.close();
    }
  });

  it("the README's tokens file example is a valid tokens file", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const example = /```yaml\n(# tokens\.yaml[\s\S]*?)```/.exec(readme)?.[1];
    expect(example, 'the README shows a tokens file').toBeDefined();
    expect(parseTokensFile(example!, 'README.md').map((e) => [e.name, e.role])).toEqual([
      ['grafana', 'reader'],
      ['alice', 'admin'],
    ]);
  });

  it('the tokens file is reloaded without a restart; a broken file keeps the previous tokens', async () => {
    expect((await post(server.url, '{ viewer { name } }', SECRETS.added)).status).toBe(401);
    writeTokens([
      ['rita', 'reader', sha256Entry(SECRETS.reader)],
      ['adam', 'admin', adminScrypt],
      ['newcomer', 'reader', sha256Entry(SECRETS.added)],
    ]);
    await eventually(
      async () => ((await post(server.url, '{ viewer { name } }', SECRETS.added)).status === 200 ? true : undefined),
      'reload',
    );
    expect((await post(server.url, '{ viewer { name role } }', SECRETS.added)).data!.viewer).toEqual({ name: 'newcomer', role: 'READER' });

    // A broken file: two entries with one name. The previous tokens stay, the reason is logged.
    writeTokens([
      ['rita', 'reader', sha256Entry(SECRETS.reader)],
      ['rita', 'admin', sha256Entry('yet-another-token-0123456789')],
    ]);
    await eventually(
      () => (logs.lines.some((l) => /tokens\.1\.name "rita" appears twice/.test(String(l.err))) ? true : undefined),
      'the refusal logged',
    );
    expect((await post(server.url, '{ viewer { name } }', SECRETS.added)).status).toBe(200);
    expect((await post(server.url, '{ viewer { name } }', SECRETS.admin)).status).toBe(200);
    const m = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${SECRETS.reader}` } })).text();
    expect(m).toMatch(/^lk_serve_tokens_file_reloads\{outcome="failed"\} 1$/m);

    // Removing a token: it stops working, the others go on.
    writeTokens([['rita', 'reader', sha256Entry(SECRETS.reader)]]);
    await eventually(
      async () => ((await post(server.url, '{ viewer { name } }', SECRETS.added)).status === 401 ? true : undefined),
      'removed',
    );
    expect((await post(server.url, '{ viewer { name } }', SECRETS.admin)).status).toBe(401);
    expect((await post(server.url, '{ viewer { name } }', SECRETS.reader)).status).toBe(200);
    // --auth-token is not in the file: it goes on working.
    expect((await post(server.url, '{ viewer { name } }', SECRETS.authToken)).status).toBe(200);
  });
});
