// The upstream object service (GET {base}/objects/{id} → {"id": N, "online": bool}, sent as
// text/plain, in 300 ms to 4.3 s). Connections are kept alive and reused (undici Pool);
// each attempt has its own timeout; failed attempts are retried with exponential backoff
// and jitter; a circuit breaker stops calling an upstream that keeps failing and lets a
// probe through after a pause. At most `concurrency` requests are in flight at once.
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
} from 'cockatiel';
import { Pool } from 'undici';
import { type ObjectStatus, parseObjectStatus } from './callback.ts';

export type LookupOutcome = 'online' | 'offline' | 'error' | 'timeout' | 'invalid' | 'circuit_open';

export type BreakerState = 'closed' | 'open' | 'half_open';

export type UpstreamOptions = Readonly<{
  baseUrl: string;
  concurrency: number;
  timeoutMs: number;
  // Tries per lookup, the first included, before the lookup counts as failed.
  attempts?: number;
  retryInitialDelayMs?: number;
  // Consecutive failed attempts that open the breaker, and how long it stays open.
  breakerThreshold?: number;
  halfOpenAfterMs?: number;
  // Each attempt, with how long it took.
  onAttempt?: (outcome: LookupOutcome, seconds: number) => void;
  onBreakerChange?: (state: BreakerState) => void;
}>;

class InvalidAnswerError extends Error {}
class UpstreamStatusError extends Error {}

const BREAKER_STATES: Record<number, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Isolated]: 'open',
};

export class Upstream {
  #pool: Pool;
  readonly #origin: string;
  readonly #basePath: string;
  #options: UpstreamOptions;
  readonly #closing = new AbortController();
  readonly #breaker;
  readonly #retries;
  readonly #slots: Slots;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    const url = new URL(options.baseUrl);
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#origin = url.origin;
    this.#pool = this.#newPool();
    this.#breaker = circuitBreaker(
      handleWhen(() => !this.#closing.signal.aborted),
      {
        halfOpenAfter: options.halfOpenAfterMs ?? 5_000,
        breaker: new ConsecutiveBreaker(options.breakerThreshold ?? 20),
      },
    );
    this.#breaker.onStateChange((state) => options.onBreakerChange?.(BREAKER_STATES[state] ?? 'open'));
    this.#retries = retry(
      handleWhen((err) => !(err instanceof BrokenCircuitError) && !this.#closing.signal.aborted),
      {
        maxAttempts: (options.attempts ?? 3) - 1,
        backoff: new ExponentialBackoff({
          initialDelay: options.retryInitialDelayMs ?? 200,
          maxDelay: 5_000,
        }),
      },
    );
    this.#slots = new Slots(options.concurrency);
  }

  #newPool(): Pool {
    return new Pool(this.#origin, {
      connections: this.#options.concurrency,
      // The stand-in and most servers keep idle connections 5 s or more; undici also honours
      // a Keep-Alive: timeout= hint from the server.
      keepAliveTimeout: 4_000,
      headersTimeout: this.#options.timeoutMs,
      bodyTimeout: this.#options.timeoutMs,
    });
  }

  // A new cap at once, for the lookups waiting too; requests in flight finish on the old
  // pool, which closes once they have.
  setConcurrency(concurrency: number): void {
    if (concurrency === this.#options.concurrency) return;
    this.#options = { ...this.#options, concurrency };
    const old = this.#pool;
    this.#pool = this.#newPool();
    this.#slots.setLimit(concurrency);
    old.close().catch(() => {});
  }

  get breakerState(): BreakerState {
    return BREAKER_STATES[this.#breaker.state] ?? 'open';
  }

  // Resolves with the object's status or rejects once every attempt has failed.
  // Retries outermost, so a lookup waiting out its backoff holds no concurrency slot; the
  // breaker inside the slot, so lookups that waited for one are refused once it opened.
  lookup(id: number): Promise<ObjectStatus> {
    return this.#retries.execute(
      () => this.#slots.run(() => this.#breaker.execute(() => this.#attempt(id), this.#closing.signal)),
      this.#closing.signal,
    );
  }

  async #attempt(id: number): Promise<ObjectStatus> {
    const started = performance.now();
    let outcome: LookupOutcome = 'error';
    try {
      const status = await this.#request(id);
      outcome = status.online ? 'online' : 'offline';
      return status;
    } catch (err) {
      outcome =
        err instanceof InvalidAnswerError
          ? 'invalid'
          : (err as Error).name === 'TimeoutError' || (err as { code?: string }).code?.includes('TIMEOUT')
            ? 'timeout'
            : 'error';
      throw err;
    } finally {
      this.#options.onAttempt?.(outcome, (performance.now() - started) / 1000);
    }
  }

  async #request(id: number): Promise<ObjectStatus> {
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#options.timeoutMs)]);
    const { statusCode, body } = await this.#pool.request({
      method: 'GET',
      path: `${this.#basePath}/objects/${id}`,
      signal,
    });
    const text = await body.text();
    if (statusCode !== 200) throw new UpstreamStatusError(`upstream answered ${statusCode}`);
    try {
      return parseObjectStatus(text, id);
    } catch (err) {
      throw new InvalidAnswerError((err as Error).message);
    }
  }

  // Lookups in progress are abandoned (their callbacks stay in the intake).
  async close(): Promise<void> {
    this.#closing.abort();
    this.#slots.setLimit(Number.POSITIVE_INFINITY);
    await this.#pool.destroy();
  }
}

// A concurrency cap whose limit can change while callers wait (cockatiel's bulkhead has a
// fixed one): the runtime setting callbacks-concurrency.
class Slots {
  #limit: number;
  #used = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  setLimit(limit: number): void {
    this.#limit = limit;
    this.#admit();
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#used < this.#limit) this.#used++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      this.#used--;
      this.#admit();
    }
  }

  // A waiter is handed the slot it takes, so none is taken twice.
  #admit(): void {
    while (this.#used < this.#limit && this.#waiting.length > 0) {
      this.#used++;
      (this.#waiting.shift() as () => void)();
    }
  }
}

export function isCircuitOpen(err: unknown): boolean {
  return err instanceof BrokenCircuitError;
}
