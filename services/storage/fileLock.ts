/**
 * Cross-process exclusive lock on a file path (the embedded log, the lake writer; Node has no flock).
 *
 * The lock file names its owner: `<pid> <hostname> <token>`, the token being random per process.
 * A lock is stale, and taken over, when its owner is gone:
 * - on this host, when no process has its pid, or when the pid is our own but the token is not
 *   (an earlier process that had our pid: containers start every service with the same small
 *   pid, so a restarted container meets the lock of its previous run under its own pid);
 * - on another host (another container sharing the volume), when the lock file has not been
 *   touched for FOREIGN_STALE_MS: every holder touches its locks every REFRESH_MS.
 * So a SIGKILLed writer never blocks the log or the lake for good. Lock files of older versions
 * hold only a pid and are judged as this host's.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { InfrastructureError } from '../errors.ts';

export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How often a holder touches its locks, and when a lock of another host counts as abandoned. */
const REFRESH_MS = 10_000;
const FOREIGN_STALE_MS = 60_000;
const HOST = hostname();
const TOKEN = randomBytes(8).toString('hex');
const OWNER = `${process.pid} ${HOST} ${TOKEN}`;

/** Locks this process holds, touched every REFRESH_MS so that other hosts see them alive. */
const held = new Set<string>();
let refresher: NodeJS.Timeout | undefined;

function hold(path: string): void {
  held.add(path);
  refresher ??= setInterval(() => {
    const now = new Date();
    for (const p of held) {
      try {
        utimesSync(p, now, now);
      } catch {
        /* released or taken over meanwhile */
      }
    }
  }, REFRESH_MS).unref();
}

/** Creates the lock file exclusively; false when it exists. */
function createLock(path: string): boolean {
  try {
    const fd = openSync(path, 'wx');
    writeSync(fd, OWNER);
    closeSync(fd);
    hold(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

/** Tries once (taking over a lock whose owner died); returns true when this process now holds the lock. */
export function tryLock(path: string): boolean {
  if (createLock(path)) return true;
  let text: string;
  let ageMs: number;
  try {
    text = readFileSync(path, 'utf8').trim();
    ageMs = Date.now() - statSync(path).mtimeMs;
  } catch {
    return false; // released between our open and read: try again later
  }
  const stale = isStale(text, ageMs);
  if (stale) {
    try {
      unlinkSync(path);
    } catch {
      /* another process removed it first */
    }
    // The owner is dead: one more try, so that a single call after a crash takes the lock.
    return createLock(path);
  }
  return false;
}

/** Whether a lock file's owner is gone (see the top of this file). */
function isStale(text: string, ageMs: number): boolean {
  // An empty lock is being written by its owner right now, unless it is old (owner died between
  // creating and writing it).
  if (text === '') return ageMs > 5_000;
  const [pidText, host, token] = text.split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid)) return ageMs > 5_000;
  if (host !== undefined && host !== HOST) return ageMs > FOREIGN_STALE_MS;
  if (pid === process.pid) return token !== undefined && token !== TOKEN;
  return !processAlive(pid);
}

export async function acquireLock(path: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  while (!tryLock(path)) {
    if (Date.now() > deadline) throw new InfrastructureError(`timed out waiting for lock ${path}`);
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

export function releaseLock(path: string): void {
  held.delete(path);
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}
