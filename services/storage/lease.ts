/**
 * A lease on an object of the shared store: what replaces a lock file where something must be
 * done by one process at a time across hosts (the speed job's lake-replay phase). Nothing in it
 * depends on a pid, a hostname or the clocks of two hosts agreeing:
 *
 *   <key>   {"holder": "...", "token": 7, "released": false}
 *
 * - Acquire: create the object create-only (token 1), or, when it says released, replace it by a
 *   compare-and-swap on the version read (token + 1).
 * - Hold: the holder replaces it by compare-and-swap (a renewal, same token) every `ttlMs / 3`.
 *   A renewal that finds another version lost the lease: `lost` aborts, and the holder stops.
 * - Take over: a waiter that sees the same version (ETag) for `ttlMs` of its own clock knows the
 *   holder stopped renewing (it died, or hangs): it replaces that version by compare-and-swap,
 *   token + 1. Of several waiters exactly one wins.
 * - Release: the holder marks it released (compare-and-swap), so the next one need not wait.
 *
 * The token is a fencing token: it grows with every new holder, so a write the resource checks
 * against the token can tell a holder from a paused one that lost the lease. The lake replay's
 * resource, each partition's checkpoint, is fenced by Kafka itself (the partition's
 * transactional producer); the lease keeps the work from being done twice, and the holder checks
 * `lost` before each step.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { InfrastructureError, errorMessage } from '../errors.ts';
import { logger } from '../observability/logger.ts';
import { readStoredJson } from './jsonFile.ts';
import type { ObjectStore } from './objectStore.ts';

const leaseSchema = z.object({
  holder: z.string(),
  token: z.number().int().positive(),
  released: z.boolean(),
});
type LeaseRecord = z.infer<typeof leaseSchema>;

export interface Lease {
  /** The fencing token: larger for every new holder. */
  readonly token: number;
  /** Aborted when a renewal found the lease taken: stop the work at the next step. */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

export interface LeaseOptions {
  /** How long a holder may go without renewing before a waiter takes the lease over. */
  ttlMs?: number;
  /** Stop waiting when this returns true (the waiter is stopping); acquire then resolves undefined. */
  stopped?: () => boolean;
  /** Names the holder in the object, for people reading it. */
  holder?: string;
}

const DEFAULT_TTL_MS = 30_000;

/** Acquires the lease at `key`, waiting for the holder to release it or to stop renewing it. */
export async function acquireLease(store: ObjectStore, key: string, options: LeaseOptions = {}): Promise<Lease | undefined> {
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  const holder = `${options.holder ?? `${hostname()}-${process.pid}`} ${randomBytes(4).toString('hex')}`;
  let watched: { etag: string; since: number } | undefined;
  let delay = 50;
  for (;;) {
    if (options.stopped?.()) return undefined;
    const current = await readStoredJson(store, key, leaseSchema, 'a lease');
    let token: number | undefined;
    if (!current) {
      token = 1;
      const put = await store.put(key, body({ holder, token, released: false }), { ifAbsent: true });
      if (put.ok) return hold(store, key, { holder, token, released: false }, put.etag, ttlMs);
    } else {
      const now = Date.now();
      if (watched?.etag !== current.etag) watched = { etag: current.etag, since: now };
      if (current.value.released || now - watched.since >= ttlMs) {
        token = current.value.token + 1;
        const mine: LeaseRecord = { holder, token, released: false };
        const put = await store.put(key, body(mine), { ifMatch: current.etag });
        if (put.ok) {
          if (!current.value.released)
            logger.warn({ lease: key, previous: current.value.holder, token }, 'took over a lease its holder stopped renewing');
          return hold(store, key, mine, put.etag, ttlMs);
        }
      }
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}

function body(record: LeaseRecord): string {
  return `${JSON.stringify(record)}\n`;
}

function hold(store: ObjectStore, key: string, record: LeaseRecord, firstEtag: string, ttlMs: number): Lease {
  const lost = new AbortController();
  let etag = firstEtag;
  let renewing: Promise<void> = Promise.resolve();
  const renew = async () => {
    try {
      const put = await store.put(key, body(record), { ifMatch: etag });
      if (put.ok) etag = put.etag;
      else {
        logger.warn({ lease: key, token: record.token }, 'lost a lease: another process holds it now');
        lost.abort(new InfrastructureError(`lost the lease ${store.location}/${key}`));
      }
    } catch (err) {
      // The store is unreachable: keep trying; a waiter takes over only after a whole ttl without renewal.
      logger.debug({ lease: key, err: errorMessage(err) }, 'could not renew a lease');
    }
  };
  const timer = setInterval(() => {
    if (!lost.signal.aborted) renewing = renewing.then(renew);
  }, ttlMs / 3);
  timer.unref();
  return {
    token: record.token,
    lost: lost.signal,
    async release() {
      clearInterval(timer);
      await renewing;
      if (lost.signal.aborted) return;
      await store.put(key, body({ ...record, released: true }), { ifMatch: etag }).catch(() => undefined);
    },
  };
}
