// Token-bucket rate limiting per client key (an IP address, later a user id), the same
// algorithm as Go's x/time/rate the book uses. Buckets live in a Map kept in least-recently
// -used order, so memory stays bounded however many distinct clients arrive: past
// `maxClients` the stalest bucket goes first, and buckets idle longer than `idleMs` are
// swept (an idle bucket is full again anyway, so forgetting it changes nothing).
// With -redis-url the buckets live in Redis instead (rate-limit.redis.ts), behind the same
// RateLimitStore interface; this one stays the store without Redis and the fallback with it.
import { RateLimitedError } from './errors.ts';

// rps and burst are read at every call, never copied, so whoever holds this object may
// change them while the process runs.
export type RateLimitSettings = { readonly rps: number; readonly burst: number };

export type RateLimitOptions = Readonly<{
  settings: RateLimitSettings;
  maxClients?: number;
  idleMs?: number;
  now?: () => number;
}>;

// take() spends one token of `key` or throws RateLimitedError; check() throws the same way
// when `key` has none left, without spending. The local store answers synchronously (no
// promise on the hot path); a shared store answers with a promise.
export type RateLimitStore = Readonly<{
  take(key: string): void | Promise<void>;
  check(key: string): void | Promise<void>;
}>;

// The longest Retry-After ever sent. The limiter-rps rule keeps the real wait under 100 s;
// the cap keeps the header a finite delta-seconds value whatever a store reports.
export const MAX_RETRY_AFTER_SECONDS = 3600;

// Seconds until a bucket holding `tokens` has one again: Retry-After and RateLimit-Reset.
export function retryAfterSeconds(tokens: number, rps: number): number {
  const seconds = Math.ceil((1 - tokens) / rps);
  if (!(seconds <= MAX_RETRY_AFTER_SECONDS)) return MAX_RETRY_AFTER_SECONDS;
  return Math.max(1, seconds);
}

export function rateLimited(tokens: number, settings: RateLimitSettings): RateLimitedError {
  return new RateLimitedError(retryAfterSeconds(tokens, settings.rps), settings.burst);
}

type Bucket = { tokens: number; last: number };

export class RateLimiter implements RateLimitStore {
  readonly #settings: RateLimitSettings;
  readonly #maxClients: number;
  readonly #idleMs: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  #lastSweep: number;

  constructor(options: RateLimitOptions) {
    this.#settings = options.settings;
    this.#maxClients = options.maxClients ?? 100_000;
    this.#idleMs = options.idleMs ?? 3 * 60_000;
    this.#now = options.now ?? (() => performance.now());
    this.#lastSweep = this.#now();
  }

  get size(): number {
    return this.#buckets.size;
  }

  // Takes one token for `key`, or throws RateLimitedError saying when one will be there.
  take(key: string): void {
    const now = this.#now();
    if (now - this.#lastSweep > this.#idleMs) this.#sweep(now);
    const { rps, burst } = this.#settings;
    const bucket = this.#buckets.get(key);
    let tokens: number;
    if (bucket) {
      this.#buckets.delete(key);
      tokens = Math.min(burst, bucket.tokens + ((now - bucket.last) / 1000) * rps);
    } else {
      tokens = burst;
      if (this.#buckets.size >= this.#maxClients) {
        this.#buckets.delete(this.#buckets.keys().next().value as string);
      }
    }
    const allowed = tokens >= 1;
    this.#buckets.set(key, { tokens: allowed ? tokens - 1 : tokens, last: now });
    if (!allowed) throw rateLimited(tokens, this.#settings);
  }

  // Throws like take() when `key` has no token left, without spending one.
  check(key: string): void {
    const bucket = this.#buckets.get(key);
    if (!bucket) return;
    const { rps, burst } = this.#settings;
    const tokens = Math.min(burst, bucket.tokens + ((this.#now() - bucket.last) / 1000) * rps);
    if (tokens < 1) throw rateLimited(tokens, this.#settings);
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    // Oldest first: stop at the first bucket that is still fresh.
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.last <= this.#idleMs) break;
      this.#buckets.delete(key);
    }
  }
}
