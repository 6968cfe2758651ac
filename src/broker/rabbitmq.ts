// The broker port on RabbitMQ (rabbitmq-client): one connection that reconnects by itself,
// a confirming publisher for the events' topic exchange, and a consumer of the command queue
// whose dead letters carry their reason. See docs/events.md for what goes on the wire.
import { type AsyncMessage, Connection, ConsumerStatus, type Publisher } from 'rabbitmq-client';
import type { Logger } from '../platform/logger.ts';
import type { BrokerConfig } from './broker.flags.ts';
import type {
  BrokerPort,
  CommandHandler,
  CommandOutcome,
  IncomingCommand,
  OutgoingMessage,
} from './broker.ts';

// The header a dead-lettered command carries its reason in.
export const REASON_HEADER = 'x-greenlight-error';

const CLOSE_TIMEOUT_MS = 2000;

export const deadLetterName = (queue: string): string => `${queue}.dead`;

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
});

function consumeCommands(
  connection: Connection,
  config: BrokerConfig,
  deadPublisher: Publisher,
  handler: CommandHandler,
  logger: Logger,
): () => Promise<void> {
  const dead = deadLetterName(config.commandsQueue);
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
      if (outcome.kind === 'retry') return ConsumerStatus.REQUEUE;
      try {
        await deadPublisher.send(
          {
            exchange: dead,
            durable: true,
            messageId: msg.messageId,
            type: msg.type,
            contentType: msg.contentType,
            contentEncoding: msg.contentEncoding,
            correlationId: msg.correlationId,
            headers: { ...msg.headers, [REASON_HEADER]: outcome.reason.slice(0, 4096) },
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
  // The dead-letter queue, declared once the broker answers (the consumer declares its own).
  const declared = declareDeadLetterQueue(connection, dead, logger, () => consumer.start());
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

function declareDeadLetterQueue(connection: Connection, dead: string, logger: Logger, then: () => void) {
  let stopped = false;
  const run = (async () => {
    for (let delayMs = 100; !stopped; delayMs = Math.min(delayMs * 2, 5000)) {
      try {
        await connection.exchangeDeclare({ exchange: dead, type: 'fanout', durable: true });
        await connection.queueDeclare({ queue: dead, durable: true });
        await connection.queueBind({ queue: dead, exchange: dead });
        if (!stopped) then();
        return;
      } catch (err) {
        logger.debug({ err }, 'dead-letter queue not declared yet; retrying');
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
