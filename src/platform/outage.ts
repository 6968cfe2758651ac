// A database outage in the log: one line when it starts, then one summary every few seconds,
// however many requests it refuses. Logging every refused request (hundreds a second under
// load) would drown the log and cost the CPU the recovery needs.
import type { FastifyBaseLogger } from 'fastify';

// After this long without a refused request, the next one starts a new outage.
const OUTAGE_GAP_MS = 30_000;

export class OutageLog {
  readonly #summaryMs: number;
  #startedAt = 0;
  #lastFailureAt = Number.NEGATIVE_INFINITY;
  #lastLineAt = 0;
  #refused = 0;

  constructor(summaryMs = 5_000) {
    this.#summaryMs = summaryMs;
  }

  // A request refused because the database is unreachable, with the error that said so.
  refused(log: FastifyBaseLogger, err: unknown, now = performance.now()): void {
    const fresh = now - this.#lastFailureAt > OUTAGE_GAP_MS;
    this.#lastFailureAt = now;
    if (fresh) {
      this.#startedAt = now;
      this.#lastLineAt = now;
      this.#refused = 0;
      log.error({ err }, 'database unavailable: requests are answered 503');
      return;
    }
    this.#refused++;
    if (now - this.#lastLineAt < this.#summaryMs) return;
    log.warn(
      {
        err,
        refused: this.#refused,
        outage_seconds: Math.round((now - this.#startedAt) / 1000),
      },
      'database still unavailable',
    );
    this.#lastLineAt = now;
    this.#refused = 0;
  }
}

// One process talks to one database: one outage log for every listener and API in it.
export const databaseOutage = new OutageLog();
