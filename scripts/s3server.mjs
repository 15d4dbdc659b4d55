#!/usr/bin/env node
// A real S3-compatible server without Docker: the Versity S3 Gateway (versitygw, Apache-2.0) with
// its POSIX backend, on 127.0.0.1. Tests start one per test file, as they start Kafka brokers of
// their own; `npm run s3 -- start` runs one for a user's own experiments; the compose stack runs
// the same binary as its `s3` service.
//
// Why versitygw: it comes from a registry this project may use (the Go module proxy, built once
// with the machine's Go into a cache: about 50 s), starts in milliseconds, and implements S3's
// conditional writes atomically: of 16 concurrent `If-None-Match: *` creates of one key exactly
// one succeeds, and of 16 concurrent `If-Match` replacements from one ETag exactly one succeeds
// (it takes an advisory lock per object for conditional publishes). s3proxy (Maven Central) was
// tried first: its filesystem backend checks If-Match and then writes without a lock, and 23 of
// 30 rounds of 16 concurrent replacements had more than one winner, which would let two
// promotions both win. services/storage/__tests__/objectStore.contract.spec.ts proves both
// answers of the server the tests use.
//
// CLI:    node scripts/s3server.mjs resolve|start|stop|status   (npm run s3 -- start)
// Module: import { startS3Server, ensureS3Server, s3Env } from './scripts/s3server.mjs'
//
// Environment (all optional):
//   LK_S3_SERVER_BIN   an existing versitygw binary (skips the build)
//   LK_S3_CACHE        build cache (default ~/.cache/lambda-kappa/versitygw-<version>)
//   LK_S3_PORT         port of `start` (default 9000)
//   LK_S3_HOME         folder of `start`: objects (<home>/data/<bucket>/<key>), pid, log
//                      (default <repo>/.lk/s3)
//   LK_S3_BUCKETS      buckets `start` creates (default lake,state)
//
// Plain Node ESM, like scripts/kafka.mjs, so that it runs before any TypeScript tooling.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const VERSITYGW_MODULE = 'github.com/versity/versitygw/cmd/versitygw';
export const DEFAULT_VERSITYGW_VERSION = 'v1.8.0';
/** Credentials of the servers these scripts start (a local test server, not a secret). */
export const S3_ACCESS_KEY = 'lk-access-key';
export const S3_SECRET_KEY = 'lk-secret-key-for-local-tests';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const START_TIMEOUT_MS = 30_000;

export class S3ServerError extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'S3ServerError';
    this.details = details;
  }
}

function which(cmd, env = process.env) {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const p = join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

function config(opts = {}) {
  const env = opts.env ?? process.env;
  const version = opts.version ?? DEFAULT_VERSITYGW_VERSION;
  const cache = resolve(opts.cache ?? env.LK_S3_CACHE ?? join(homedir(), '.cache', 'lambda-kappa', `versitygw-${version}`));
  return {
    env,
    version,
    cache,
    bin: env.LK_S3_SERVER_BIN ? resolve(env.LK_S3_SERVER_BIN) : join(cache, 'bin', 'versitygw'),
    log: opts.quiet ? () => {} : (m) => process.stderr.write(`[s3] ${m}\n`),
  };
}

/**
 * The versitygw binary: built once from the Go module proxy into the cache (needs `go` on PATH
 * the first time). Static (CGO_ENABLED=0), so the same file runs in the compose stack's image.
 */
export async function ensureS3Server(opts = {}) {
  const cfg = config(opts);
  if (existsSync(cfg.bin)) return { bin: cfg.bin, built: false, ms: 0 };
  if (cfg.env.LK_S3_SERVER_BIN) throw new S3ServerError(`LK_S3_SERVER_BIN=${cfg.env.LK_S3_SERVER_BIN} does not exist`);
  const go = which('go', cfg.env);
  if (!go) {
    throw new S3ServerError(
      `Go not found (\`go\` on PATH is needed once, to build ${VERSITYGW_MODULE}@${cfg.version} from the Go module proxy): install Go 1.24+ (e.g. \`apt-get install golang\`), or set LK_S3_SERVER_BIN to a versitygw binary`,
    );
  }
  const tmpBin = join(cfg.cache, `bin.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmpBin, { recursive: true });
  cfg.log(`building ${VERSITYGW_MODULE}@${cfg.version} from the Go module proxy into ${cfg.cache} (one-time; about a minute)...`);
  const t0 = Date.now();
  const res = await new Promise((done) => {
    const out = [];
    const child = spawn(go, ['install', '-ldflags=-s -w', `${VERSITYGW_MODULE}@${cfg.version}`], {
      cwd: cfg.cache,
      env: {
        ...cfg.env,
        CGO_ENABLED: '0',
        GOBIN: tmpBin,
        GOPATH: join(cfg.cache, 'gopath'),
        // The module cache is read-only by default, which makes the cache hard to delete.
        GOFLAGS: `${cfg.env.GOFLAGS ?? ''} -modcacherw`.trim(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => out.push(d));
    child.on('error', (e) => done({ status: -1, text: String(e) }));
    child.on('close', (status) => done({ status, text: Buffer.concat(out).toString('utf8') }));
  });
  const built = join(tmpBin, 'versitygw');
  if (res.status !== 0 || !existsSync(built)) {
    rmSync(tmpBin, { recursive: true, force: true });
    const lines = res.text.split('\n').filter((l) => l.trim() && !l.startsWith('go: downloading'));
    throw new S3ServerError(
      `could not build ${VERSITYGW_MODULE}@${cfg.version} (${(lines.at(-1) ?? `exit ${res.status}`).trim().slice(0, 300)})`,
      lines.slice(-20).join('\n'),
    );
  }
  mkdirSync(dirname(cfg.bin), { recursive: true });
  try {
    renameSync(built, cfg.bin);
  } catch (e) {
    if (!existsSync(cfg.bin)) throw new S3ServerError(`could not move versitygw into ${cfg.bin}: ${e.message}`);
  } finally {
    rmSync(tmpBin, { recursive: true, force: true });
  }
  cfg.log(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { bin: cfg.bin, built: true, ms: Date.now() - t0 };
}

function portOpen(port) {
  return new Promise((done) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '';
  }
}

/** Waits until the server answers HTTP (an anonymous request is refused: it is up). */
async function waitUntilServing(endpoint, child, logFile) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new S3ServerError(`versitygw exited with code ${child.exitCode} while starting`, tail(logFile));
    try {
      const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new S3ServerError(`versitygw did not answer at ${endpoint} within ${START_TIMEOUT_MS / 1000} s`, tail(logFile));
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts versitygw on 127.0.0.1:`port`, serving the folder `<dir>/data` (bucket B, object K is
 * the file `<dir>/data/B/K`), with the buckets in `buckets` created. Returns the endpoint, the
 * credentials, the child process and `stop()`.
 */
export async function startS3Server(opts) {
  const { port, dir } = opts;
  if (!Number.isInteger(port) || port <= 0) throw new S3ServerError(`startS3Server needs a port, got ${port}`);
  const cfg = config(opts);
  const { bin } = await ensureS3Server(opts);
  if (await portOpen(port)) throw new S3ServerError(`port ${port} on 127.0.0.1 is already in use`);
  const root = resolve(dir);
  const data = join(root, 'data');
  for (const bucket of opts.buckets ?? []) mkdirSync(join(data, bucket), { recursive: true });
  mkdirSync(data, { recursive: true });
  const endpoint = `http://127.0.0.1:${port}`;
  const accessKey = opts.accessKey ?? S3_ACCESS_KEY;
  const secretKey = opts.secretKey ?? S3_SECRET_KEY;
  const logFile = join(root, 'versitygw.log');
  const out = openSync(logFile, 'a');
  const child = spawn(bin, ['--port', `127.0.0.1:${port}`, '--quiet', 'posix', data], {
    cwd: root,
    // Credentials through the environment, not the command line (which `ps` shows).
    env: { ...cfg.env, ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey, VGW_REGION: 'us-east-1' },
    stdio: ['ignore', out, out],
    detached: opts.detached ?? false,
  });
  if (opts.detached) child.unref();
  writeFileSync(join(root, 'versitygw.pid'), `${child.pid}\n`);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitUntilServing(endpoint, child, logFile);
  } catch (e) {
    await stop();
    throw e;
  }
  return { endpoint, accessKey, secretKey, region: 'us-east-1', dataDir: data, pid: child.pid, process: child, stop };
}

/** The standard AWS settings a client of `server` uses. */
export function s3Env(server) {
  return {
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_ACCESS_KEY_ID: server.accessKey,
    AWS_SECRET_ACCESS_KEY: server.secretKey,
    AWS_REGION: server.region,
  };
}

// ---------------------------------------------------------------------------
// CLI

async function main(argv) {
  const cmd = argv[0] ?? 'help';
  const home = resolve(process.env.LK_S3_HOME ?? join(REPO_ROOT, '.lk', 's3'));
  const port = Number(process.env.LK_S3_PORT ?? 9000);
  const pidFile = join(home, 'versitygw.pid');
  const running = () => {
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  };
  switch (cmd) {
    case 'resolve': {
      console.log((await ensureS3Server()).bin);
      return;
    }
    case 'start': {
      const pid = running();
      if (pid) return console.log(`the S3 server already runs (pid ${pid}) at http://127.0.0.1:${port}`);
      const buckets = (process.env.LK_S3_BUCKETS ?? 'lake,state').split(',').filter(Boolean);
      const s = await startS3Server({ port, dir: home, detached: true, buckets });
      console.log(`the S3 server (versitygw) runs at ${s.endpoint} (pid ${s.pid}), buckets ${buckets.join(', ')}, objects in ${s.dataDir}`);
      console.log('use it with:');
      for (const [k, v] of Object.entries(s3Env(s))) console.log(`  export ${k}=${v}`);
      return;
    }
    case 'stop': {
      const pid = running();
      if (!pid) return console.log('the S3 server is not running');
      process.kill(pid, 'SIGTERM');
      rmSync(pidFile, { force: true });
      return console.log(`stopped the S3 server (pid ${pid})`);
    }
    case 'status': {
      const pid = running();
      return console.log(pid ? `the S3 server runs (pid ${pid}) at http://127.0.0.1:${port}` : 'the S3 server is not running');
    }
    default:
      console.log(
        'usage: node scripts/s3server.mjs resolve|start|stop|status   (env: LK_S3_PORT, LK_S3_HOME, LK_S3_BUCKETS, LK_S3_SERVER_BIN)',
      );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`s3: ${e.message}\n${e.details ? `${e.details}\n` : ''}`);
    process.exit(1);
  });
}
