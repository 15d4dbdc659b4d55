#!/usr/bin/env node
// delta-rs (the `deltalake` package from PyPI) for the tests that read and write the lake with an
// engine that is not ours: a Python virtual environment created once in a cache, with pinned
// versions of deltalake, pyarrow and duckdb (the docs' examples use both).
//
// CLI:    node scripts/deltars.mjs resolve     (prints the Python to run; .ci/run calls it cold)
// Module: import { ensureDeltaRs } from './scripts/deltars.mjs'
//
// Environment (optional):
//   LK_DELTARS_CACHE  the venv (default ~/.cache/lambda-kappa/deltalake-<version>)
//   LK_PYTHON         the Python that creates it (default python3; 3.9 or newer)
//
// Plain Node ESM, like scripts/kafka.mjs and scripts/s3server.mjs.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the venv holds: delta-rs 1.x, and what the docs' examples use beside it. */
export const DELTARS_PACKAGES = ['deltalake==1.6.6', 'pyarrow==26.0.1', 'duckdb==2.0.0'];
const VERSION = DELTARS_PACKAGES[0].split('==')[1];

export class DeltaRsError extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'DeltaRsError';
    this.details = details;
  }
}

function run(cmd, args, options = {}) {
  const res = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (res.error) throw new DeltaRsError(`cannot run ${cmd}: ${res.error.message}`);
  return res;
}

/**
 * The venv's Python, creating the venv the first time (under a minute: pip downloads wheels from
 * PyPI). Built in a temporary folder and renamed into place, so that two test files starting at
 * once never see a half-made one.
 */
export function ensureDeltaRs(opts = {}) {
  const env = opts.env ?? process.env;
  const dir = resolve(env.LK_DELTARS_CACHE ?? join(homedir(), '.cache', 'lambda-kappa', `deltalake-${VERSION}`));
  const python = join(dir, 'bin', 'python');
  if (existsSync(join(dir, '.complete'))) return { python, built: false };
  const log = opts.quiet ? () => {} : (m) => process.stderr.write(`[delta-rs] ${m}\n`);
  const base = env.LK_PYTHON ?? 'python3';
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  log(`creating a Python venv with ${DELTARS_PACKAGES.join(' ')} in ${dir} (one-time, under a minute)...`);
  const t0 = Date.now();
  let res = run(base, ['-m', 'venv', tmp]);
  if (res.status !== 0) throw new DeltaRsError(`${base} -m venv failed (Python 3.9+ with venv is needed)`, res.stderr);
  res = run(join(tmp, 'bin', 'python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...DELTARS_PACKAGES]);
  if (res.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    throw new DeltaRsError(`pip install ${DELTARS_PACKAGES.join(' ')} failed`, `${res.stdout}\n${res.stderr}`.trim().slice(-2000));
  }
  run(join(tmp, 'bin', 'python'), ['-c', 'open(__import__("sys").prefix + "/.complete", "w").close()']);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, '.complete'))) throw new DeltaRsError(`cannot move the venv into ${dir}: ${e.message}`);
  }
  log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { python, built: true };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cmd = process.argv[2] ?? 'help';
  if (cmd === 'resolve') {
    try {
      console.log(ensureDeltaRs().python);
    } catch (e) {
      process.stderr.write(`delta-rs: ${e.message}\n${e.details ? `${e.details}\n` : ''}`);
      process.exit(1);
    }
  } else {
    console.log('usage: node scripts/deltars.mjs resolve   (env: LK_DELTARS_CACHE, LK_PYTHON)');
  }
}
