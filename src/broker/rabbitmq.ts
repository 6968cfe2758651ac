// The broker port on RabbitMQ (rabbitmq-client): one connection that reconnects by itself,
// a confirming publisher for the events' topic exchange, and a consumer of the command queue
// whose dead letters carry their reason and whose retries wait in a queue per delay. See
// docs/events.md for what goes on the wire.
import { type AsyncMessage, Connection, ConsumerStatus, type Publisher } from 'rabbitmq-client';
import type { Logger } from '../platform/logger.ts';
import type { BrokerConfig } from './broker.flags.ts';
import {
  type BrokerPort,
  type CommandHandler,
  type CommandOutcome,
  type IncomingCommand,
  type OutgoingMessage,
  RETRY_DELAYS_MS,
} from './broker.ts';

// The header a dead-lettered command carries its reason in.
export const REASON_HEADER = 'x-greenlight-error';
// The header a retried command carries its count of transient failures in.
export const ATTEMPTS_HEADER = 'x-greenlight-attempts';

const CLOSE_TIMEOUT_MS = 2000;

export const deadLetterName = (queue: string): string => `${queue}.dead`;

// Where a retry waits `delayMs`: a queue nobody consumes whose messages expire after the delay
// and are dead-lettered back to the command queue (through the default exchange).
export const retryQueueName = (queue: string, delayMs: number): string => `${queue}.retry.${delayMs}ms`;

// The credential headers of a command (matched in any case: AMQP's names are case-sensitive,
// a sender's may not be): never copied into a dead letter, which anyone reading the
// dead-letter queue sees.
const CREDENTIAL_HEADERS = new Set(['authorization', 'x-api-key']);
// What RabbitMQ adds when it dead-letters a message (a retry's expiry): its own to write.
const DEATH_HEADER = /^x-(first-|last-)?death/i;

export function rabbitmqBroker(config: BrokerConfig, logger: Logger): BrokerPort {
  const connection = new Connection({
    url: config.url,
    connectionName: 'greenlight',
    // Reconnects within 100 ms to 5 s; a request waiting for a channel fails after 5 s
    // and the caller retries it (the relay with its own backoff).
    retryLow: 100,
    retryHigh: 5000,
    acquireTimeout: 5000,
    connectionTimeout: 5000,
  });
  let down = false;
  connection.on('error', (err) => {
    if (!down) logger.warn({ err }, 'message broker connection failed; reconnecting');
    down = true;
  });
  connection.on('connection', () => {
    if (down) logger.info('message broker connection re-established');
    down = false;
  });
  const publisher = connection.createPublisher({
    confirm: true,
    exchanges: [{ exchange: config.exchange, type: 'topic', durable: true }],
  });
  const dead = deadLetterName(config.commandsQueue);
  const deadPublisher = connection.createPublisher({
    confirm: true,
    exchanges: [{ exchange: dead, type: 'fanout', durable: true }],
  });
  return {
    publishBatch: async (messages) => {
      // Sent one after another on one channel, confirmed together.
      await Promise.all(messages.map((message) => publish(publisher, config.exchange, message)));
    },
    consumeCommands: (handler) => consumeCommands(connection, config, deadPublisher, handler, logger),
    close: () =>
      bounded(Promise.all([publisher.close(), deadPublisher.close()]).then(() => connection.close())),
  };
}

// Waits for one of rabbitmq-client's closes at most CLOSE_TIMEOUT_MS: with the broker down (or
// going down meanwhile) a close may never resolve, holding no handle, and the service's
// shutdown would wait forever.
async function bounded(closing: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closing.catch(() => {}),
    new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
}

function publish(publisher: Publisher, exchange: string, message: OutgoingMessage): Promise<void> {
  return publisher.send(
    {
      exchange,
      routingKey: message.routingKey,
      durable: true,
      messageId: message.messageId,
      type: message.routingKey,
      contentType: 'application/json',
      appId: 'greenlight',
      timestamp: Math.floor(message.timestamp / 1000),
      headers: { ...message.headers, 'x-greenlight-subject': message.subject },
    },
    message.body,
  );
}

// The headers a command is sent on with (to a retry queue, or to the dead letters without its
// credential).
function forwardedHeaders(headers: Readonly<Record<string, unknown>>, withCredential: boolean) {
  const kept = Object.entries(headers).filter(
    ([name]) => !DEATH_HEADER.test(name) && (withCredential || !CREDENTIAL_HEADERS.has(name.toLowerCase())),
  );
  return Object.fromEntries(kept);
}

// A count of failures a sender could have written too: anything but a small whole number is 0.
function attemptsOf(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

// The library hands over JSON already parsed and text as a string; the handler reads bytes.
function bodyBytes(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  return Buffer.from(JSON.stringify(body ?? null));
}

const toCommand = (msg: AsyncMessage): IncomingCommand => ({
  messageId: msg.messageId || undefined,
  type: msg.type || undefined,
  contentType: msg.contentType,
  headers: msg.headers ?? {},
  body: bodyBytes(msg.body),
  redelivered: msg.redelivered,
  attempts: attemptsOf(msg.headers?.[ATTEMPTS_HEADER]),
});

// The message's properties, sent on as they came.
const propertiesOf = (msg: AsyncMessage) => ({
  durable: true,
  messageId: msg.messageId,
  type: msg.type,
  contentType: msg.contentType,
  contentEncoding: msg.contentEncoding,
  correlationId: msg.correlationId,
});

function consumeCommands(
  connection: Connection,
  config: BrokerConfig,
  deadPublisher: Publisher,
  handler: CommandHandler,
  logger: Logger,
): () => Promise<void> {
  const queue = config.commandsQueue;
  const dead = deadLetterName(queue);
  const inProgress = new Set<Promise<CommandOutcome>>();
  const consumer = connection.createConsumer(
    {
      queue: config.commandsQueue,
      // What the broker itself rejects (and a dead letter we could not publish) still goes
      // to the dead-letter queue, without a reason header.
      queueOptions: { durable: true, arguments: { 'x-dead-letter-exchange': dead } },
      qos: { prefetchCount: config.commandsConcurrency },
      concurrency: config.commandsConcurrency,
      requeue: true,
      // started once the dead-letter queue exists, so that no dead letter is dropped
      lazy: true,
    },
    async (msg) => {
      const handling = handler(toCommand(msg));
      inProgress.add(handling);
      const outcome = await handling.finally(() => inProgress.delete(handling));
      if (outcome.kind === 'ack') return ConsumerStatus.ACK;
      if (outcome.kind === 'retry') return sendToRetry(deadPublisher, queue, msg, outcome, logger);
      try {
        await deadPublisher.send(
          {
            ...propertiesOf(msg),
            exchange: dead,
            headers: {
              ...forwardedHeaders(msg.headers ?? {}, false),
              [REASON_HEADER]: outcome.reason.slice(0, 4096),
            },
          },
          bodyBytes(msg.body),
        );
        return ConsumerStatus.ACK;
      } catch (err) {
        logger.warn({ err, reason: outcome.reason }, 'dead letter not published with its reason');
        return ConsumerStatus.DROP;
      }
    },
  );
  consumer.on('error', (err) => logger.warn({ err }, 'command consumer failed; it restarts'));
  // The dead-letter and retry queues, declared once the broker answers (the consumer declares
  // its own).
  const declared = declareSideQueues(connection, queue, logger, () => consumer.start());
  // Stopping takes no new command and waits for those in progress, ours to wait for (their
  // outcome is lost with the channel, and the broker delivers them again); the library's own
  // close gets a bound.
  return async () => {
    await declared.stop();
    const closing = consumer.close();
    await Promise.allSettled(inProgress);
    await bounded(closing);
  };
}

// A transient failure: the command is published to the retry queue of its delay, with its count
// of failures, and only then acknowledged, so it never holds a consumer's slot while it waits
// (a requeue would hand it back at once, and a wait in the handler would hold the slot). Not
// published (the channel lost): put back, to be retried at once.
async function sendToRetry(
  publisher: Publisher,
  queue: string,
  msg: AsyncMessage,
  outcome: Extract<CommandOutcome, { kind: 'retry' }>,
  logger: Logger,
): Promise<ConsumerStatus> {
  try {
    await publisher.send(
      {
        ...propertiesOf(msg),
        exchange: '',
        routingKey: retryQueueName(queue, outcome.delayMs),
        headers: { ...forwardedHeaders(msg.headers ?? {}, true), [ATTEMPTS_HEADER]: outcome.attempt },
      },
      bodyBytes(msg.body),
    );
    return ConsumerStatus.ACK;
  } catch (err) {
    logger.warn({ err, message_id: msg.messageId }, 'command retry not scheduled; requeued');
    return ConsumerStatus.REQUEUE;
  }
}

function declareSideQueues(connection: Connection, queue: string, logger: Logger, then: () => void) {
  const dead = deadLetterName(queue);
  let stopped = false;
  const run = (async () => {
    for (let delayMs = 100; !stopped; delayMs = Math.min(delayMs * 2, 5000)) {
      try {
        await connection.exchangeDeclare({ exchange: dead, type: 'fanout', durable: true });
        await connection.queueDeclare({ queue: dead, durable: true });
        await connection.queueBind({ queue: dead, exchange: dead });
        for (const ttl of RETRY_DELAYS_MS) {
          await connection.queueDeclare({
            queue: retryQueueName(queue, ttl),
            durable: true,
            arguments: {
              'x-message-ttl': ttl,
              'x-dead-letter-exchange': '',
              'x-dead-letter-routing-key': queue,
            },
          });
        }
        if (!stopped) then();
        return;
      } catch (err) {
        logger.debug({ err }, 'dead-letter and retry queues not declared yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await run;
    },
  };
}
