// The other systems of the broker tests, on rabbitmq-client as a consumer of ours would be:
// a queue bound to the events' exchange that records every message, a sender of commands,
// and a reader of the dead-letter queue; and the service's command handler without a broker.
import { after } from 'node:test';
import prom from 'prom-client';
import { type AsyncMessage, Connection } from 'rabbitmq-client';
import { createAuthenticators, createJwts, reauthenticator } from '../src/auth/registry.ts';
import { BrokerMetrics } from '../src/broker/broker.metrics.ts';
import type { CommandHandler } from '../src/broker/broker.ts';
import { commandHandler } from '../src/broker/commands.ts';
import type { Db } from '../src/platform/db.ts';
import type { Logger } from '../src/platform/logger.ts';
import { type TestApp, waitFor } from './helpers.ts';

export type Received = Readonly<{
  messageId: string;
  routingKey: string;
  type: string | undefined;
  contentType: string | undefined;
  durable: boolean;
  headers: Record<string, unknown>;
  body: Record<string, unknown>;
  arrivedAt: number;
}>;

export type Collector = { messages: Received[]; close: () => Promise<void> };

// A connection closed after the file's tests.
export function connect(url: string): Connection {
  const connection = new Connection({ url, retryLow: 100, retryHigh: 1000 });
  connection.on('error', () => {});
  after(() => Promise.race([connection.close(), new Promise((resolve) => setTimeout(resolve, 2000))]));
  return connection;
}

const parsed = (body: unknown): Record<string, unknown> =>
  Buffer.isBuffer(body) || typeof body === 'string'
    ? JSON.parse(body.toString())
    : (body as Record<string, unknown>);

// A durable queue of our own bound to the exchange (every routing key): it keeps what is
// published while we are away and across a broker restart. Acknowledged after recording.
export async function collect(
  connection: Connection,
  queue: string,
  exchange = 'greenlight.events',
): Promise<Collector> {
  const messages: Received[] = [];
  const consumer = connection.createConsumer(
    {
      queue,
      queueOptions: { durable: true },
      exchanges: [{ exchange, type: 'topic', durable: true }],
      queueBindings: [{ exchange, routingKey: '#' }],
      qos: { prefetchCount: 1000 },
    },
    (msg: AsyncMessage) => {
      messages.push({
        messageId: String(msg.messageId),
        routingKey: msg.routingKey,
        type: msg.type,
        contentType: msg.contentType,
        durable: msg.durable === true,
        headers: msg.headers ?? {},
        body: parsed(msg.body),
        arrivedAt: Date.now(),
      });
    },
  );
  consumer.on('error', () => {});
  await new Promise((resolve) => consumer.once('ready', resolve));
  return { messages, close: () => consumer.close() };
}

// Until the service has declared the queue (a passive declare fails before).
const declared = (connection: Connection, queue: string) =>
  waitFor(
    `the service to declare ${queue}`,
    () =>
      connection.queueDeclare({ queue, passive: true }).then(
        () => true,
        () => false,
      ),
    30_000,
  );

export type CommandMessage = Readonly<{
  messageId?: string;
  type?: string;
  headers?: Record<string, string>;
  contentType?: string;
  body: string | Buffer;
}>;

// Waits until the service has declared the command queue, then sends each command (persistent,
// confirmed).
export async function sendCommands(
  connection: Connection,
  commands: readonly CommandMessage[],
  queue = 'greenlight.commands',
): Promise<void> {
  await declared(connection, queue);
  const publisher = connection.createPublisher({ confirm: true });
  try {
    for (const command of commands) {
      await publisher.send(
        {
          routingKey: queue,
          durable: true,
          messageId: command.messageId,
          type: command.type,
          headers: command.headers,
          contentType: command.contentType,
        },
        Buffer.isBuffer(command.body) ? command.body : Buffer.from(command.body),
      );
    }
  } finally {
    await publisher.close();
  }
}

export type DeadLetter = Readonly<{ messageId: string | undefined; reason: unknown; body: string }>;

// What reaches the dead-letter queue from now on.
export async function deadLetters(
  connection: Connection,
  queue = 'greenlight.commands.dead',
): Promise<{ letters: DeadLetter[]; close: () => Promise<void> }> {
  const letters: DeadLetter[] = [];
  await declared(connection, queue);
  const consumer = connection.createConsumer({ queue, queueOptions: { passive: true } }, (msg) => {
    const body = Buffer.isBuffer(msg.body) ? msg.body.toString() : JSON.stringify(msg.body);
    letters.push({ messageId: msg.messageId, reason: msg.headers?.['x-greenlight-error'], body });
  });
  consumer.on('error', () => {});
  await new Promise((resolve) => consumer.once('ready', resolve));
  return { letters, close: () => consumer.close() };
}

// The command handler the broker plugin builds for the app `t`, called directly (on `db`,
// the app's pool unless given), logging to `logger`.
export function commandHandlerOf(t: TestApp, logger: Logger, db: Db = t.db): CommandHandler {
  const authenticators = createAuthenticators({
    config: t.config,
    db: t.db,
    cache: undefined,
    logger,
    jwts: createJwts(t.config),
  });
  return commandHandler({
    db,
    orders: { jobs: t.jobs },
    operations: t.config.operations,
    reauthenticate: reauthenticator(authenticators),
    logger,
    metrics: new BrokerMetrics(new prom.Registry()),
  });
}
