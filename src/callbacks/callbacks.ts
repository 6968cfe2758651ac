// The callback service's use cases: accept a callback (store it durably, then answer),
// process stored callbacks (claim, look every id up upstream, store the online ones), and
// sweep objects not seen within the TTL. Every instance runs all three on the same tables:
// claims are disjoint (SKIP LOCKED) and leased, so a crashed instance's work is claimed
// again when its lease runs out; the sweep takes an advisory lock.
import type prom from 'prom-client';
import type { CallbacksConfig } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { RETRY_AFTER_SECONDS, UnavailableError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { type CallbackBatch, MAX_IDS_PER_CALLBACK, type ObjectStatus } from './callback.ts';
import { CallbackMetrics } from './callbacks.metrics.ts';
import {
  claimBatches,
  countObjects,
  deleteBatch,
  deleteExpiredObjects,
  finishBatch,
  releaseBatches,
  renewLeases,
  selectBacklog,
  selectObjects,
} from './callbacks.sql.ts';
import { Intake } from './intake.ts';
import { isCircuitOpen, Upstream, type UpstreamOptions } from './upstream.ts';

export type CallbackServiceOptions = Readonly<{
  config: CallbacksConfig;
  // The intake gets its own pool so that answering callbacks never queues behind workers;
  // `intakeConnections` is its size.
  intakeDb: Db;
  intakeConnections: number;
  workDb: Db;
  logger: Logger;
  registry: prom.Registry;
  // Tuning the tests shorten; production uses the defaults.
  upstream?: Partial<UpstreamOptions>;
  sweepIntervalMs?: number;
  pollIntervalMs?: number;
}>;

const CLAIM_LIMIT = 50;
// A process claims more while the ids waiting for their turn are fewer than twice the
// lookups that may run (so that the instances sharing a database share its callbacks), or
// while fewer than two callbacks wait for their turn (so that small callbacks are still
// claimed beside one of 10,000 ids). A claim takes callbacks while their ids add up to at
// most the room left, or the most one callback may carry, whichever is more, the first
// always: 50 small callbacks (whose ids are mostly held already) still come in one claim,
// and a process holds a few of the largest at most (50 callbacks of 10,000 ids each were
// once half a million lookups at once, over a gigabyte).
const CLAIM_IDS = MAX_IDS_PER_CALLBACK;
const TURNS_ALWAYS_CLAIMED = 2;
// A claimed callback waits for its slowest id (up to 4.3 s at the task's upstream): at 500
// callbacks a second, about 2,500 are held at any time. Each costs a few kB.
const MAX_HELD_BATCHES = 3_000;
const MAX_RETRY_DELAY_MS = 10_000;
const CLAIM_ERROR_PAUSE_MS = 1_000;

// A claimed callback waiting for the answers about its ids.
type Waiting = {
  remaining: number;
  online: number[];
  unresolved: number[];
  firstError?: unknown;
  done: (waiting: Waiting) => void;
};

// The ids a claimed callback was the first to ask for, started one per turn.
type Turn = { ids: number[]; next: number };

const ascending = (a: number, b: number) => a - b;

export class CallbackService {
  readonly metrics: CallbackMetrics;
  #config: CallbacksConfig;
  readonly #intakeDb: Db;
  readonly #intake: Intake;
  readonly #workDb: Db;
  readonly #logger: Logger;
  readonly #upstream: Upstream;
  readonly #sweepIntervalMs: number;
  readonly #pollIntervalMs: number;
  // One upstream request per id at a time, whichever callbacks ask for it: the ids held,
  // whose lookup runs or waits for its turn, and the callbacks waiting for each answer.
  readonly #lookups = new Map<number, Waiting[]>();
  // The callbacks with ids not started yet, in the order of their next turn.
  readonly #turns = new Map<number, Turn>();
  // The ids of those turns not started yet, and the lookups started and not answered.
  #waitingIds = 0;
  #running = 0;
  // Batches this process has claimed and not finished, with their processing.
  readonly #held = new Map<number, Promise<void>>();
  // Of those, the ones whose lease is still ours to renew, with when it was last renewed.
  readonly #leased = new Map<number, number>();
  #stopping = false;
  #wake: () => void = () => {};
  #claimer: Promise<void> = Promise.resolve();
  #timers: NodeJS.Timeout[] = [];

  constructor(options: CallbackServiceOptions) {
    this.#config = options.config;
    this.#intakeDb = options.intakeDb;
    this.#intake = new Intake(options.intakeDb, options.intakeConnections);
    this.#workDb = options.workDb;
    this.#logger = options.logger.child({ component: 'callbacks' });
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 1_000;
    this.#pollIntervalMs = options.pollIntervalMs ?? 100;
    this.metrics = new CallbackMetrics(options.registry, {
      lookupsInFlight: () => this.#lookups.size,
      // While the database is away the gauges read NaN, and /metrics still answers.
      backlog: () =>
        selectBacklog(this.#intakeDb).catch(() => ({ callbacks: Number.NaN, oldestSeconds: Number.NaN })),
      breakerState: () => this.#upstream.breakerState,
      objectsStored: () => countObjects(this.#intakeDb).catch(() => Number.NaN),
    });
    this.#upstream = new Upstream({
      baseUrl: options.config.upstream,
      concurrency: options.config.concurrency,
      timeoutMs: options.config.upstreamTimeoutMs,
      onAttempt: (outcome, seconds) => this.metrics.lookupAttempted(outcome, seconds),
      onBreakerChange: (state) => {
        this.metrics.breakerTransitions.inc({ state });
        this.#logger[state === 'open' ? 'warn' : 'info']({ state }, 'upstream circuit breaker changed');
      },
      ...options.upstream,
    });
  }

  get lookupsInFlight(): number {
    return this.#lookups.size;
  }

  get breakerState() {
    return this.#upstream.breakerState;
  }

  // The runtime settings callbacks-concurrency and callbacks-ttl: the claimer and the sweep
  // read the configuration at each turn, the upstream takes its new cap at once, and held ids
  // start up to it.
  retune(changes: Partial<Pick<CallbacksConfig, 'concurrency' | 'ttlMs'>>): void {
    this.#config = { ...this.#config, ...changes };
    if (changes.concurrency === undefined) return;
    this.#upstream.setConcurrency(changes.concurrency);
    this.#startLookups();
  }

  // Stored before it returns: a callback acknowledged is a callback that will be processed.
  async accept(objectIds: readonly number[], sentIds: number): Promise<void> {
    if (objectIds.length > 0) {
      try {
        await this.#intake.store(objectIds);
      } catch (err) {
        this.metrics.rejected.inc({ reason: 'unavailable' });
        // Logged by the error path, once per outage (src/platform/outage.ts), not per callback.
        throw new UnavailableError('the callback could not be stored, please retry', RETRY_AFTER_SECONDS, {
          cause: err,
        });
      }
    }
    this.metrics.received.inc();
    this.metrics.idsReceived.inc(sentIds);
  }

  rejected(): void {
    this.metrics.rejected.inc({ reason: 'invalid' });
  }

  health(): Promise<{ callbacks: number; oldestSeconds: number }> {
    return this.#read(() => selectBacklog(this.#intakeDb));
  }

  objects(limit: number) {
    return this.#read(() => selectObjects(this.#intakeDb, limit));
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (err) {
      throw new UnavailableError(`the database is unavailable`, RETRY_AFTER_SECONDS, { cause: err });
    }
  }

  start(): void {
    this.#claimer = this.#claimLoop();
    let sweeping = false;
    this.#timers.push(
      setInterval(() => {
        if (sweeping) return;
        sweeping = true;
        this.sweep()
          .catch((err: unknown) => this.#logger.warn({ err }, 'callback sweep failed'))
          .finally(() => {
            sweeping = false;
          });
      }, this.#sweepIntervalMs),
      // Most callbacks finish within seconds: only those held for a third of the lease are
      // renewed, rather than every held row rewritten at every tick.
      setInterval(() => {
        const now = Date.now();
        const due = [...this.#leased].filter(([, renewed]) => now - renewed >= this.#config.leaseMs / 3);
        for (const [id] of due) this.#leased.set(id, now);
        renewLeases(
          this.#workDb,
          due.map(([id]) => id),
          this.#config.leaseMs,
        ).catch((err: unknown) => this.#logger.warn({ err }, 'could not renew callback leases'));
      }, this.#config.leaseMs / 6),
    );
  }

  async sweep(): Promise<number> {
    const deleted = await deleteExpiredObjects(this.#workDb, this.#config.ttlMs);
    if (deleted > 0) {
      this.metrics.expired.inc(deleted);
      this.#logger.debug({ deleted }, 'expired callback objects');
    }
    return deleted;
  }

  // Stops claiming, lets claimed callbacks finish within the grace period, then abandons the
  // lookups still running and hands their callbacks back for any instance to claim.
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#timers) clearInterval(timer);
    this.#wake();
    await this.#claimer;
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.#held.values()),
      new Promise((resolve) => {
        deadline = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(deadline);
    await this.#upstream.close();
    await Promise.all(this.#held.values());
    await releaseBatches(this.#workDb, [...this.#leased.keys()]).catch((err: unknown) =>
      this.#logger.warn({ err }, 'could not hand back claimed callbacks; their leases will run out'),
    );
  }

  async #claimLoop(): Promise<void> {
    const maxWaiting = () => this.#config.concurrency * 2;
    const room = () =>
      (this.#waitingIds < maxWaiting() || this.#turns.size < TURNS_ALWAYS_CLAIMED) &&
      this.#held.size < MAX_HELD_BATCHES;
    while (!this.#stopping) {
      let claimed = 0;
      if (room()) {
        try {
          const batches = await claimBatches(
            this.#workDb,
            { callbacks: CLAIM_LIMIT, ids: Math.max(CLAIM_IDS, maxWaiting() - this.#waitingIds) },
            this.#config.leaseMs,
            this.#config.ttlMs,
          );
          claimed = batches.length;
          for (const batch of batches) this.#hold(batch);
        } catch (err) {
          this.#logger.warn({ err }, 'could not claim callbacks');
          // The database is away: try again in a while rather than at every poll.
          await this.#pause(CLAIM_ERROR_PAUSE_MS);
          continue;
        }
      }
      if (claimed < CLAIM_LIMIT || !room()) await this.#pause(this.#pollIntervalMs);
    }
  }

  // Until the poll interval passes or the service stops. Accepting a callback does not wake
  // the claimer: a claim per callback would cost more than the poll's delay is worth.
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  #hold(batch: CallbackBatch): void {
    if (this.#held.has(batch.id)) return;
    this.#leased.set(batch.id, Date.now());
    const processing = this.#process(batch)
      .catch((err: unknown) => {
        // Left claimed: the lease runs out and the callback is claimed again.
        this.#logger.error({ err, callback: batch.id }, 'could not finish a callback');
      })
      .finally(() => {
        this.#held.delete(batch.id);
        this.#leased.delete(batch.id);
      });
    this.#held.set(batch.id, processing);
  }

  async #process(batch: CallbackBatch): Promise<void> {
    if (batch.expired) {
      // Whatever the upstream says now, objects seen then are already due for deletion.
      this.#leased.delete(batch.id);
      await deleteBatch(this.#workDb, batch.id);
      this.metrics.abandoned.inc(batch.objectIds.length);
      this.#logger.warn(
        { callback: batch.id, ids: batch.objectIds.length, attempts: batch.attempts },
        'callback older than the TTL dropped unresolved',
      );
      return;
    }
    const waiting = await new Promise<Waiting>((resolve) => {
      const entry: Waiting = { remaining: batch.objectIds.length, online: [], unresolved: [], done: resolve };
      if (entry.remaining === 0) resolve(entry);
      this.#enqueue(batch, entry);
    });
    // Answers come in any order; the upsert wants its ids sorted.
    const online = waiting.online.sort(ascending);
    const unresolved = waiting.unresolved.sort(ascending);
    this.#leased.delete(batch.id);
    const delayMs = this.#stopping ? 0 : retryDelay(batch.attempts);
    await finishBatch(this.#workDb, batch, online, unresolved, delayMs);
    if (unresolved.length > 0 && !this.#stopping) {
      this.#logger.warn(
        {
          callback: batch.id,
          unresolved: unresolved.length,
          attempts: batch.attempts,
          delay_ms: delayMs,
          err: waiting.firstError,
        },
        'callback lookups failed; retrying later',
      );
    }
  }

  // Adds the callback to the waiters for each of its ids, and gives it a turn for the ids no
  // other callback holds. A waiter is a counter and two arrays, not a promise per id:
  // thousands of held callbacks of up to 10,000 ids each stay cheap for the garbage collector.
  #enqueue(batch: CallbackBatch, waiting: Waiting): void {
    const first: number[] = [];
    for (const id of batch.objectIds) {
      const waiters = this.#lookups.get(id);
      if (waiters) waiters.push(waiting);
      else {
        this.#lookups.set(id, [waiting]);
        first.push(id);
      }
    }
    if (first.length > 0) this.#turns.set(batch.id, { ids: first, next: 0 });
    this.#waitingIds += first.length;
    this.#startLookups();
  }

  // One id of each callback in turn, so that a callback of 10,000 ids does not keep the
  // upstream from those claimed after it. Twice the concurrency may run: the lookups waiting
  // out a retry's backoff hold no connection.
  #startLookups(): void {
    while (this.#running < this.#config.concurrency * 2 && this.#turns.size > 0) {
      const [callback, turn] = this.#turns.entries().next().value as [number, Turn];
      this.#turns.delete(callback);
      const id = turn.ids[turn.next++] as number;
      this.#waitingIds--;
      if (turn.next < turn.ids.length) this.#turns.set(callback, turn);
      this.#lookup(id);
    }
  }

  #lookup(id: number): void {
    this.#running++;
    const settle = (status: ObjectStatus | undefined, err?: unknown) => {
      this.#running--;
      const waiters = this.#lookups.get(id) ?? [];
      this.#lookups.delete(id);
      for (const entry of waiters) {
        if (!status) {
          entry.unresolved.push(id);
          entry.firstError ??= err;
        } else if (status.online) entry.online.push(id);
        if (--entry.remaining === 0) entry.done(entry);
      }
      this.#startLookups();
    };
    this.#upstream.lookup(id).then(
      (status) => settle(status),
      (err: unknown) => {
        if (isCircuitOpen(err)) this.metrics.lookups.inc({ outcome: 'circuit_open' });
        settle(undefined, err);
      },
    );
  }
}

// Exponential in the callback's attempts, with full jitter, so retries of many callbacks
// spread out instead of arriving together.
function retryDelay(attempts: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, 250 * 2 ** Math.min(attempts, 10));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
