// The intake's writes, grouped: a callback is answered once the commit that holds it is on
// disk, and callbacks that arrive while the pool's commits are all in flight go together
// in the next one. Under C1 (500 callbacks a second) each callback had its own commit, and
// the four connections queued them behind one WAL flush after another; now one flush
// carries every callback that arrived meanwhile. A statement stores all of its callbacks or
// none, and each caller hears its own outcome, so nothing is acknowledged that is not stored.
import type { Db } from '../platform/db.ts';
import { insertBatches } from './callbacks.sql.ts';

// At most this many callbacks a statement (each at most 1 MB of ids).
const MAX_PER_STATEMENT = 64;

type Pending = Readonly<{
  objectIds: readonly number[];
  resolve: () => void;
  reject: (err: unknown) => void;
}>;

export class Intake {
  readonly #db: Db;
  readonly #maxInFlight: number;
  #inFlight = 0;
  #pending: Pending[] = [];

  // `maxInFlight`: the pool's size, so a statement never waits for a connection.
  constructor(db: Db, maxInFlight: number) {
    this.#db = db;
    this.#maxInFlight = maxInFlight;
  }

  // Resolves once the callback's ids are committed; rejects when its statement failed.
  store(objectIds: readonly number[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ objectIds, resolve, reject });
      this.#write();
    });
  }

  #write(): void {
    if (this.#inFlight >= this.#maxInFlight || this.#pending.length === 0) return;
    const group = this.#pending.splice(0, MAX_PER_STATEMENT);
    this.#inFlight++;
    insertBatches(
      this.#db,
      group.map((p) => p.objectIds),
    )
      .then(
        () => {
          for (const p of group) p.resolve();
        },
        (err: unknown) => {
          for (const p of group) p.reject(err);
        },
      )
      .finally(() => {
        this.#inFlight--;
        this.#write();
      });
  }
}
