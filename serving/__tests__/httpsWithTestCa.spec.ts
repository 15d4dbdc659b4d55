/**
 * HTTPS with --tls-cert and --tls-key, against a certificate authority made by this test with
 * openssl: GraphQL, the dashboard and WebSocket subscriptions (wss://) are served over TLS and
 * verified against the test's CA (and refused by a client that does not trust it); plain HTTP
 * gets nothing; a renewed certificate is served to new connections without a restart.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { publishSpeedRows, publishSyntheticBatchRun } from './fixtures/viewFixtures.ts';
import { startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A CA, and a certificate for 127.0.0.1 signed by it (ECDSA P-256: quick to make). */
function makeCa(dir: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=lk test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

function makeServerCert(dir: string, name: string, serial: string): void {
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      '/CN=127.0.0.1',
    ],
    dir,
  );
  writeFileSync(
    join(dir, `${name}.ext`),
    'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      serial,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

interface TlsAnswer {
  status: number;
  body: string;
  contentType: string | undefined;
  serial: string;
}

function get(
  url: string,
  ca: Buffer | undefined,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', ca, headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          contentType: res.headers['content-type'],
          serial: (res.socket as TLSSocket).getPeerCertificate().serialNumber,
        }),
      );
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('HTTPS with a CA made by the test', () => {
  const dir = tempDir('lk-serve-tls-');
  const version = uniqueName('tls').toLowerCase().slice(-24);
  let server: TestServer;
  let ca: Buffer;

  beforeAll(async () => {
    makeCa(dir.path);
    makeServerCert(dir.path, 'server', '0x1001');
    ca = readFileSync(join(dir.path, 'ca.crt'));
    await publishSyntheticBatchRun(dir.path, version, { keys: 3, windows: 10, start: START });
    server = await startTestServer(dir.path, {
      defaultVersion: version,
      tlsCert: join(dir.path, 'server.crt'),
      tlsKey: join(dir.path, 'server.key'),
      reloadPollMs: 100,
    });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it('answers GraphQL and the dashboard over HTTPS, verified against the CA', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const q = await get(`${server.url}/graphql`, ca, {
      method: 'POST',
      body: JSON.stringify({ query: '{ metrics { name } }' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(q.status).toBe(200);
    expect(JSON.parse(q.body).data.metrics).toHaveLength(3);
    const page = await get(`${server.url}/`, ca);
    expect(page.status).toBe(200);
    expect(page.contentType).toMatch(/text\/html/);
    expect((await get(`${server.url}/healthz`, ca)).status).toBe(200);
  });

  it('refuses clients that do not trust the CA, and plain HTTP', async () => {
    await expect(get(`${server.url}/healthz`, undefined)).rejects.toThrow(/self.signed|unable to (verify|get)|certificate/i);
    await expect(fetch(`${server.url.replace('https', 'http')}/healthz`)).rejects.toThrow();
  });

  it('streams a subscription over wss://', async () => {
    class TrustingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { ca });
      }
    }
    const client = createClient({
      url: `${server.url.replace('https', 'wss')}/graphql`,
      webSocketImpl: TrustingWebSocket,
      retryAttempts: 0,
    });
    try {
      const next = new Promise<unknown>((resolve, reject) =>
        client.subscribe(
          { query: 'subscription { windowUpdated(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE) { key count } }' },
          { next: (v) => resolve(v.data), error: reject, complete: () => undefined },
        ),
      );
      await eventually(async () => {
        const m = await get(`${server.url}/metrics`, ca);
        return /^lk_serve_subscriptions 1$/m.test(m.body) ? true : undefined;
      }, 'the subscription open');
      const log = testLog('lk-serve-tls');
      try {
        await publishSpeedRows(
          log,
          version,
          [
            {
              metric: 'clicks_by_ad',
              granularity: 'minute',
              key: 'ad-1',
              windowStart: START,
              partition: 1,
              count: 500,
              sum: 1,
              min: 1,
              max: 1,
              distinctSketch: null,
              misplaced: 0,
              throughOffset: 2_000_000,
              processingTime: START + 1,
            },
          ],
          `lk-tls-${version}`,
        );
      } finally {
        await log.close();
      }
      expect(await next).toEqual({ windowUpdated: { key: 'ad-1', count: expect.any(Number) } });
    } finally {
      await client.dispose();
    }
  });

  it('serves a renewed certificate to new connections without a restart', async () => {
    expect((await get(`${server.url}/healthz`, ca)).serial).toBe('1001');
    makeServerCert(dir.path, 'renewed', '0x2002');
    // The pair is replaced by rename, key first: a certificate without its key is never loaded.
    execFileSync('mv', [join(dir.path, 'renewed.key'), join(dir.path, 'server.key')]);
    execFileSync('mv', [join(dir.path, 'renewed.crt'), join(dir.path, 'server.crt')]);
    await eventually(
      async () => ((await get(`${server.url}/healthz`, ca)).serial === '2002' ? true : undefined),
      'the renewed certificate',
    );
  });
});
