// One event feed per topic and process: it reads the topic's outbox after the last event it delivered whenever
// it is woken (a NOTIFY on its LISTEN connection, or a Redis message, sent after a change
// commits: src/realtime/wakeups.ts) and on a safety poll, and hands each batch to every local
// subscriber. Clients never hold a database connection; the feed borrows pool connections to read.
// A committed event can still be hidden behind an older transaction that is running (the
// outbox is read below the oldest running transaction: src/realtime/events.sql.ts); the read
// says so, and the feed reads again soon after, backing off up to the poll.
// It starts with the first subscriber, so processes without streams hold no extra connection.
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import { eventsAfter, lastPosition, type Position, START, type StreamEvent } from './events.ts';
import type { Topic } from './topics.ts';
import type { Wakeups } from './wakeups.ts';

const BATCH = 500;
// the first re-read of events hidden behind a running transaction, doubled each time
const RETRY_MS = 2;
// Re-reads while events wait never grow further apart than this: a transaction holding the
// horizon (an autovacuum's analyze of a large table) can last seconds, and the waiting events
// are due the moment it ends, not at the next safety poll.
const MAX_RETRY_MS = 50;

export type Subscriber = (events: readonly StreamEvent[]) => void;

export class EventFeed {
  readonly topic: Topic;
  readonly #db: Db;
  readonly #wakeups: Wakeups;
  readonly #logger: Logger;
  readonly #pollMs: number;
  readonly #subscribers = new Set<Subscriber>();
  #last: Position = START;
  #started: Promise<void> | undefined;
  #stopped = false;
  #reading: Promise<void> | undefined;
  #again = false;
  #poll: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = RETRY_MS;
  #stopListening: (() => Promise<void>) | undefined;

  constructor(options: { topic: Topic; db: Db; wakeups: Wakeups; logger: Logger; pollMs: number }) {
    this.topic = options.topic;
    this.#db = options.db;
    this.#wakeups = options.wakeups;
    this.#logger = options.logger;
    this.#pollMs = options.pollMs;
  }

  // The position of the newest event handed to subscribers: a new live subscriber starts after it.
  get last(): Position {
    return this.#last;
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  // Subscribes once the feed runs; from then on every event after `last` reaches `subscriber`.
  async subscribe(subscriber: Subscriber): Promise<() => void> {
    await this.start();
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  start(): Promise<void> {
    this.#started ??= this.#start().catch((err) => {
      this.#started = undefined;
      throw err;
    });
    return this.#started;
  }

  async #start(): Promise<void> {
    this.#last = await lastPosition(this.#db, this.topic);
    this.#stopListening = this.#wakeups(() => this.wake());
    this.#poll = setInterval(() => this.wake(), this.#pollMs);
    this.#poll.unref();
  }

  // Reads and delivers what committed since the last delivery. Calls while a read runs make
  // it read once more afterwards, so a wake-up is never lost and reads never overlap.
  wake(): void {
    if (this.#stopped || this.#started === undefined) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = this.#readAll().finally(() => {
      this.#reading = undefined;
      if (this.#again) {
        this.#again = false;
        this.wake();
      }
    });
  }

  async #readAll(): Promise<void> {
    try {
      for (;;) {
        const { events, pending } = await eventsAfter(this.#db, this.topic, this.#last, BATCH);
        if (this.#stopped) return;
        if (events.length > 0) {
          this.#last = (events.at(-1) as StreamEvent).position;
          for (const subscriber of this.#subscribers) subscriber(events);
        }
        if (events.length < BATCH) return this.#retryLater(pending);
      }
    } catch (err) {
      // The next wake-up or poll retries from the same id.
      this.#logger.warn({ err, topic: this.topic.name }, 'event feed could not read the outbox');
    }
  }

  // Committed events wait behind a running transaction: read again in a few ms, then every
  // MAX_RETRY_MS while they still wait.
  #retryLater(pending: boolean): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (!pending) {
      this.#retryMs = RETRY_MS;
      return;
    }
    this.#retry = setTimeout(() => this.wake(), this.#retryMs);
    this.#retry.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#poll);
    clearTimeout(this.#retry);
    this.#subscribers.clear();
    await this.#stopListening?.();
    await this.#reading;
  }
}
