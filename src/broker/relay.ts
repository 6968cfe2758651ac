// The relay from the outboxes to the broker: one process at a time (across workers and
// instances) holds a session advisory lock on a connection of its own and, topic after topic,
// reads the outbox after its durable cursor in the delivery order (xid, id), publishes the
// batch, waits for the broker's confirms and only then moves the cursor: at-least-once, in
// commit order per subject. Everything runs on the lock's connection, so a leader whose
// connection died cannot move a cursor any more; a standby takes over within its poll.
// It is woken by the streams' after-commit wake-ups and a short safety poll.
import type pg from 'pg';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import { currentTraceContext, inSpan } from '../platform/tracing.ts';
import { durablePosition, saveDurablePosition } from '../realtime/consumers.ts';
import { eventsAfter, type Position, type StreamEvent } from '../realtime/events.ts';
import type { Topic } from '../realtime/topics.ts';
import type { WakeupSource } from '../realtime/wakeups.ts';
import type { BrokerMetrics } from './broker.metrics.ts';
import type { BrokerPort, OutgoingMessage } from './broker.ts';

// The relay's name among the outboxes' durable readers.
export const RELAY_CONSUMER = 'broker-relay';
// The session advisory lock whose holder relays (an arbitrary key of its own).
const RELAY_LOCK = 7_262_531_202_611_001n;
const BATCH = 500;
// Events hidden behind a running transaction are read again after this (ms), doubled up to
// the last value, as the streams' feed does.
const PENDING_RETRY_MS = [2, 5, 10, 20, 50];
const MAX_BACKOFF_MS = 5000;

export type RelayOptions = Readonly<{
  db: Db;
  broker: BrokerPort;
  topics: readonly Topic[];
  wakeups: WakeupSource;
  exchange: string;
  pollMs: number;
  logger: Logger;
  metrics: BrokerMetrics;
}>;

export const messageOf = (
  topic: Topic,
  event: StreamEvent,
  headers: Readonly<Record<string, string>>,
): OutgoingMessage => {
  const data = JSON.parse(event.json) as Record<string, { id?: unknown }>;
  return {
    routingKey: event.type,
    messageId: `${topic.name}-${event.id}`,
    subject: `${topic.subject}-${String(data[topic.subject]?.id)}`,
    body: Buffer.from(event.json),
    timestamp: event.createdAt.getTime(),
    headers,
  };
};

export class EventRelay {
  readonly #options: RelayOptions;
  #stopped = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #woken = false;
  // a standby is not woken by commits: it only tries the lock once a poll
  #leading = false;
  #stopWakeups: (() => Promise<void>)[] = [];

  constructor(options: RelayOptions) {
    this.#options = options;
  }

  start(): void {
    this.#stopWakeups = this.#options.topics.map((topic) => this.#options.wakeups(topic)(() => this.wake()));
    this.#running = this.#run();
  }

  wake(): void {
    if (!this.#leading && !this.#stopped) return;
    this.#woken = true;
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.wake();
    await Promise.all(this.#stopWakeups.map((stop) => stop()));
    await this.#running;
  }

  // Waits `ms`, or less when woken (a wake-up that came while working ends it at once);
  // not `wakeable`: only stopping ends it early.
  async #pause(ms: number, { wakeable = true } = {}): Promise<void> {
    if ((wakeable && this.#woken) || this.#stopped) {
      this.#woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        if (!wakeable && !this.#stopped) return;
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
    this.#woken = false;
  }

  async #run(): Promise<void> {
    const { db, logger, metrics, pollMs } = this.#options;
    // A checked-out connection's failure (PostgreSQL restarting) would otherwise be an
    // uncaught error; the next query on it fails and ends the leadership.
    const failed = (err: Error) => logger.warn({ err }, 'event relay connection failed');
    let failures = 0;
    while (!this.#stopped) {
      let client: pg.PoolClient | undefined;
      try {
        client = await db.connect();
        client.on('error', failed);
        const { rows } = await client.query<{ locked: boolean }>(
          'SELECT pg_try_advisory_lock($1) AS locked',
          [RELAY_LOCK.toString()],
        );
        if (rows[0]?.locked) {
          this.#leading = true;
          await this.#lead(client);
        }
        client.off('error', failed);
        client.release();
        client = undefined;
        failures = 0;
      } catch (err) {
        // The connection is dropped with its lock; a standby (or this process) takes over.
        // Once a streak at warn: the database down would otherwise log every poll.
        logger[failures++ === 0 ? 'warn' : 'debug']({ err }, 'event relay stopped; retrying');
        client?.off('error', failed);
        client?.release(err as Error);
        client = undefined;
      } finally {
        this.#leading = false;
        metrics.leader.set(0);
      }
      await this.#pause(pollMs);
    }
  }

  async #lead(client: pg.PoolClient): Promise<void> {
    const { topics, pollMs, metrics, logger } = this.#options;
    try {
      const positions = new Map<Topic, Position>();
      for (const topic of topics) positions.set(topic, await durablePosition(client, RELAY_CONSUMER, topic));
      metrics.leader.set(1);
      logger.info('relaying the outboxes to the message broker');
      let pendingRetry = 0;
      while (!this.#stopped) {
        let more = false;
        let pending = false;
        for (const topic of topics) {
          const step = await this.#relayBatch(client, topic, positions);
          more ||= step.full;
          pending ||= step.pending;
        }
        if (more) continue;
        pendingRetry = pending ? Math.min(pendingRetry + 1, PENDING_RETRY_MS.length) : 0;
        await this.#pause(pending ? (PENDING_RETRY_MS[pendingRetry - 1] as number) : pollMs);
      }
    } finally {
      // Before the connection goes back to the pool (a broken one is dropped, lock and all).
      await client.query('SELECT pg_advisory_unlock($1)', [RELAY_LOCK.toString()]).catch(() => {});
    }
  }

  // One batch of the topic's outbox: published, confirmed, then the cursor moved.
  async #relayBatch(
    client: pg.PoolClient,
    topic: Topic,
    positions: Map<Topic, Position>,
  ): Promise<{ full: boolean; pending: boolean }> {
    const { events, pending } = await eventsAfter(client, topic, positions.get(topic) as Position, BATCH);
    if (events.length === 0) return { full: false, pending };
    // Each message carries the trace context of the change that wrote its event, so that its
    // consumer continues the writer's trace; an event written untraced carries the batch's
    // publish span's. Without tracing the headers stay empty.
    const attributes = { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': events.length };
    await inSpan(`publish ${topic.outbox.table}`, { kind: 'PRODUCER', attributes }, () => {
      const relayed = currentTraceContext();
      return this.#publish(events.map((event) => messageOf(topic, event, event.traceContext ?? relayed)));
    });
    const last = (events.at(-1) as StreamEvent).position;
    await saveDurablePosition(client, RELAY_CONSUMER, topic, last);
    positions.set(topic, last);
    const { metrics, exchange } = this.#options;
    const now = Date.now();
    metrics.published.inc({ exchange }, events.length);
    for (const event of events)
      metrics.lag.observe({ topic: topic.name }, (now - event.createdAt.getTime()) / 1000);
    return { full: events.length === BATCH, pending };
  }

  // Until the broker confirms the whole batch (or the relay stops, which throws: the cursor
  // stays and the next leader sends the batch again).
  async #publish(messages: readonly OutgoingMessage[]): Promise<void> {
    const { broker, logger, metrics, exchange } = this.#options;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, MAX_BACKOFF_MS)) {
      try {
        return await broker.publishBatch(messages);
      } catch (err) {
        metrics.publishFailures.inc({ exchange });
        if (this.#stopped) throw err;
        logger.warn(
          { err, retry_in_ms: delayMs },
          'events not confirmed by the message broker; sending again',
        );
        await this.#pause(delayMs, { wakeable: false });
      }
    }
  }
}
