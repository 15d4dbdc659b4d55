/**
 * Cross-process exclusive lock on a file path (the embedded log, the lake writer; Node has no flock). The
 * lock file holds the owner's pid; a lock whose owner is dead is stale and taken over, so a
 * SIGKILLed writer never blocks the log forever.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
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

/** Creates the lock file exclusively; false when it exists. */
function createLock(path: string): boolean {
  try {
    const fd = openSync(path, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
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
  // An empty lock is being written by its owner right now, unless it is old (owner died between
  // creating and writing it).
  const owner = text === '' ? NaN : Number(text);
  const stale = Number.isNaN(owner) ? ageMs > 5_000 : owner !== process.pid && !processAlive(owner);
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
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}
