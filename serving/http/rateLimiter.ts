/**
 * Per-client rate limits: a token bucket of cost units per client (its token's name, else its
 * address), filled at `--rate-limit` units per second up to `--rate-burst`.
 *
 * A request is admitted while its client's bucket is not empty, and its estimated cost
 * (serving/graphql/limits.ts) is then taken, possibly into debt: a client in debt is refused with
 * HTTP 429 and `Retry-After` (the seconds until the debt is repaid), without its query being
 * parsed. Taking the cost after admission, rather than waiting for a full bucket, never starves a
 * costly request, and bounds a client's excess to one request's cost. What was spent without
 * admission (the text of a refused query, a token refused, a subscription's event) is charged
 * with `charge`.
 *
 * With several workers (serving/http/cluster.ts), the buckets live in the primary process and the
 * workers ask it (IpcRateLimiter): one bucket per client, whichever worker its connections reach.
 */
export interface Admission {
  admitted: boolean;
  /** When refused: milliseconds until the client may try again. */
  retryAfterMs: number;
}

export interface RateLimiter {
  /** Admits a request of `cost` units when the client's bucket is not empty, and takes the cost. */
  admit(client: string, cost: number): Admission | Promise<Admission>;
  /** Takes units without admission (work done anyway). */
  charge(client: string, cost: number): void;
  /** Milliseconds a client known to be in debt must still wait (0: not known to be): the refusal at the door. */
  blockedFor(client: string): number;
}

export const NO_RATE_LIMIT: RateLimiter = {
  admit: () => ({ admitted: true, retryAfterMs: 0 }),
  charge: () => undefined,
  blockedFor: () => 0,
};

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets kept at most (the full ones are dropped first: a full bucket is the same as none). */
const MAX_CLIENTS = 100_000;

export class TokenBuckets implements RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  private bucket(client: string): Bucket {
    const now = this.now();
    let b = this.buckets.get(client);
    if (!b) {
      if (this.buckets.size >= MAX_CLIENTS) this.sweep();
      if (this.buckets.size >= MAX_CLIENTS) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, at: now };
      this.buckets.set(client, b);
      return b;
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.ratePerSecond) / 1000);
    b.at = now;
    return b;
  }

  private waitMs(b: Bucket): number {
    return b.tokens > 0 ? 0 : Math.ceil(((1 - b.tokens) * 1000) / this.ratePerSecond);
  }

  admit(client: string, cost: number): Admission {
    const b = this.bucket(client);
    if (b.tokens <= 0) return { admitted: false, retryAfterMs: this.waitMs(b) };
    b.tokens -= cost;
    return { admitted: true, retryAfterMs: 0 };
  }

  charge(client: string, cost: number): void {
    this.bucket(client).tokens -= cost;
  }

  blockedFor(client: string): number {
    if (!this.buckets.has(client)) return 0;
    return this.waitMs(this.bucket(client));
  }

  /** Units a client holds now (tests). */
  tokens(client: string): number {
    return this.bucket(client).tokens;
  }

  private sweep(): void {
    for (const [client] of this.buckets) if (this.bucket(client).tokens >= this.burst) this.buckets.delete(client);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

/** The key a client's bucket has: its principal when it has a token, else its address. */
export function clientKey(principalName: string | undefined, address: string | undefined): string {
  return principalName !== undefined ? `token:${principalName}` : `address:${address ?? 'unknown'}`;
}

/** The Retry-After header's value: whole seconds, at least 1. */
export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}
