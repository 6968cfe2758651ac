// One event feed per process: it reads the outbox after the last event it delivered whenever
// it is woken (a NOTIFY on the LISTEN connection, later possibly a Redis message) and on a
// safety poll, and hands each batch to every local subscriber. Clients never hold a database
// connection; the feed holds one LISTEN connection and borrows pool connections to read.
// It starts with the first subscriber, so processes without streams hold no extra connection.
import pg from 'pg';
import { MOVIE_EVENTS_CHANNEL } from '../movies/movies.sql.ts';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import { eventsAfter, lastEventId, type StreamEvent } from './events.ts';

const BATCH = 500;
const BACKOFF_MS = { first: 250, max: 10_000 };

export type Subscriber = (events: readonly StreamEvent[]) => void;

export class EventFeed {
  readonly #db: Db;
  readonly #dsn: string;
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

  constructor(options: { db: Db; dsn: string; logger: Logger; pollMs: number }) {
    this.#db = options.db;
    this.#dsn = options.dsn;
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
    this.#lastId = await lastEventId(this.#db);
    this.#stopListening = keepListening(this.#dsn, this.#logger, () => this.wake());
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
        const events = await eventsAfter(this.#db, this.#lastId, BATCH);
        if (events.length === 0 || this.#stopped) return;
        this.#lastId = (events.at(-1) as StreamEvent).id;
        for (const subscriber of this.#subscribers) subscriber(events);
        if (events.length < BATCH) return;
      }
    } catch (err) {
      // The next wake-up or poll retries from the same id.
      this.#logger.warn({ err }, 'event feed could not read the outbox');
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

// Keeps one connection LISTENing on the events channel, reconnecting after a failure with a
// growing, jittered pause. Each (re)connect wakes the feed: notifications sent while the
// connection was down are lost, the rows are not. Returns a stop function.
function keepListening(dsn: string, logger: Logger, wake: () => void): () => Promise<void> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: dsn, application_name: 'greenlight-events-listener' });
    let failed = false;
    const fail = (err?: Error) => {
      if (failed) return;
      failed = true;
      if (client === next) client = undefined;
      next.end().catch(() => {});
      if (stopped) return;
      const pause = Math.min(BACKOFF_MS.max, BACKOFF_MS.first * 2 ** failures++) * (0.5 + Math.random() / 2);
      logger.warn(
        { err, retry_ms: Math.round(pause) },
        'event feed listener lost; the safety poll covers it',
      );
      retry = setTimeout(() => void connect(), pause);
    };
    next.on('error', fail);
    next.on('end', () => fail());
    next.on('notification', () => wake());
    client = next;
    try {
      await next.connect();
      await next.query(`LISTEN ${MOVIE_EVENTS_CHANNEL}`);
    } catch (err) {
      fail(err as Error);
      return;
    }
    failures = 0;
    wake();
  };

  void connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end().catch(() => {});
  };
}
