// One event feed per topic and process: it reads the topic's outbox after the last event it delivered whenever
// it is woken (a NOTIFY on its LISTEN connection, or a Redis message: src/realtime/wakeups.ts)
// and on a safety poll, and hands each batch to every local subscriber. Clients never hold a
// database connection; the feed borrows pool connections to read.
// It starts with the first subscriber, so processes without streams hold no extra connection.
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import { eventsAfter, lastEventId, type StreamEvent } from './events.ts';
import type { Topic } from './topics.ts';
import type { Wakeups } from './wakeups.ts';

const BATCH = 500;

export type Subscriber = (events: readonly StreamEvent[]) => void;

export class EventFeed {
  readonly topic: Topic;
  readonly #db: Db;
  readonly #wakeups: Wakeups;
  readonly #logger: Logger;
  readonly #pollMs: number;
  readonly #subscribers = new Set<Subscriber>();
  #lastId = 0;
  #started: Promise<void> | undefined;
  #stopped = false;
  #reading: Promise<void> | undefined;
  #again = false;
  #poll: NodeJS.Timeout | undefined;
  #stopListening: (() => Promise<void>) | undefined;

  constructor(options: { topic: Topic; db: Db; wakeups: Wakeups; logger: Logger; pollMs: number }) {
    this.topic = options.topic;
    this.#db = options.db;
    this.#wakeups = options.wakeups;
    this.#logger = options.logger;
    this.#pollMs = options.pollMs;
  }

  // The id of the newest event handed to subscribers: a new live subscriber starts after it.
  get lastId(): number {
    return this.#lastId;
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  // Subscribes once the feed runs; from then on every event after `lastId` reaches `subscriber`.
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
    this.#lastId = await lastEventId(this.#db, this.topic);
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
        const events = await eventsAfter(this.#db, this.topic, this.#lastId, BATCH);
        if (events.length === 0 || this.#stopped) return;
        this.#lastId = (events.at(-1) as StreamEvent).id;
        for (const subscriber of this.#subscribers) subscriber(events);
        if (events.length < BATCH) return;
      }
    } catch (err) {
      // The next wake-up or poll retries from the same id.
      this.#logger.warn({ err, topic: this.topic.name }, 'event feed could not read the outbox');
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#poll);
    this.#subscribers.clear();
    await this.#stopListening?.();
    await this.#reading;
  }
}
