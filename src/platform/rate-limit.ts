// Token-bucket rate limiting per client key (an IP address, later a user id), the same
// algorithm as Go's x/time/rate the book uses. Buckets live in a Map kept in least-recently
// -used order, so memory stays bounded however many distinct clients arrive: past
// `maxClients` the stalest bucket goes first, and buckets idle longer than `idleMs` are
// swept (an idle bucket is full again anyway, so forgetting it changes nothing).
import { RateLimitedError } from './errors.ts';

// `rps` and `burst` are read from the options object on every request, so whoever holds it
// (the runtime settings) may change them live; a bucket keeps its tokens across a change.
export type RateLimitOptions = Readonly<{
  rps: number;
  burst: number;
  maxClients?: number;
  idleMs?: number;
  now?: () => number;
}>;

type Bucket = { tokens: number; last: number };

export class RateLimiter {
  readonly #limits: Readonly<{ rps: number; burst: number }>;
  readonly #maxClients: number;
  readonly #idleMs: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  #lastSweep: number;

  constructor(options: RateLimitOptions) {
    this.#limits = options;
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
    const bucket = this.#buckets.get(key);
    let tokens: number;
    if (bucket) {
      this.#buckets.delete(key);
      tokens = Math.min(this.#limits.burst, bucket.tokens + ((now - bucket.last) / 1000) * this.#limits.rps);
    } else {
      tokens = this.#limits.burst;
      if (this.#buckets.size >= this.#maxClients) {
        this.#buckets.delete(this.#buckets.keys().next().value as string);
      }
    }
    const allowed = tokens >= 1;
    this.#buckets.set(key, { tokens: allowed ? tokens - 1 : tokens, last: now });
    if (!allowed) throw new RateLimitedError(Math.max(1, Math.ceil((1 - tokens) / this.#limits.rps)));
  }

  // Throws like take() when `key` has no token left, without spending one.
  check(key: string): void {
    const bucket = this.#buckets.get(key);
    if (!bucket) return;
    const tokens = Math.min(
      this.#limits.burst,
      bucket.tokens + ((this.#now() - bucket.last) / 1000) * this.#limits.rps,
    );
    if (tokens < 1) throw new RateLimitedError(Math.max(1, Math.ceil((1 - tokens) / this.#limits.rps)));
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
