#!/usr/bin/env node
// Health check of an `lk` container (the image's HEALTHCHECK, and docker-compose.yml's): asks the
// service's own readiness endpoint and exits 0 when it answers 200, 1 otherwise, printing why
// (Docker keeps the output in `docker inspect`'s health log). Node's fetch: the image needs no
// curl or wget.
//
//   node healthcheck.mjs [PORT] [PATH]
//
// PORT: the argument, else LK_HEALTH_PORT, else 4000 (`lk serve`'s default). `lk speed` and
// `lk batch` serve the same endpoints on their --status-port. PATH: the argument, else
// LK_HEALTH_PATH, else /readyz. LK_HEALTH_HOST (default 127.0.0.1) and LK_HEALTH_TIMEOUT_MS
// (default 3000) are there for unusual setups.
const port = process.argv[2] ?? process.env.LK_HEALTH_PORT ?? '4000';
const path = process.argv[3] ?? process.env.LK_HEALTH_PATH ?? '/readyz';
const host = process.env.LK_HEALTH_HOST ?? '127.0.0.1';
const timeoutMs = Number(process.env.LK_HEALTH_TIMEOUT_MS ?? 3000);

if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
  console.log(`healthcheck: invalid port "${port}" (argument or LK_HEALTH_PORT)`);
  process.exit(1);
}
const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}${path.startsWith('/') ? path : `/${path}`}`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = (await res.text()).trim().slice(0, 300);
  console.log(`${url} -> ${res.status} ${body}`);
  process.exit(res.status === 200 ? 0 : 1);
} catch (err) {
  const cause = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err);
  console.log(`${url} -> no answer: ${cause}`);
  process.exit(1);
}
