// The broker port: all the service asks of a message broker, so that the relay and the command
// consumer never see which broker it is. RabbitMQ implements it (rabbitmq.ts); a Kafka adapter
// would implement the same two calls (docs/scaling.md, "A Kafka adapter").

// A domain event on its way out.
export type OutgoingMessage = Readonly<{
  // the event type (`movie.updated`): RabbitMQ's routing key, Kafka's header
  routingKey: string;
  // `<topic>-<event id>`, unique across outboxes: consumers deduplicate by it
  messageId: string;
  // the changed record's key (`movie-42`): the unit of ordering (Kafka's partition key)
  subject: string;
  // UTF-8 JSON, the event as the SSE stream sends it
  body: Buffer;
  // when the change was written (ms since the epoch)
  timestamp: number;
  headers: Readonly<Record<string, string>>;
}>;

// A command as the broker delivered it; anything a sender can put in a message is possible.
export type IncomingCommand = Readonly<{
  messageId: string | undefined;
  type: string | undefined;
  contentType: string | undefined;
  headers: Readonly<Record<string, unknown>>;
  body: Buffer;
  // delivered before and not acknowledged (a consumer died)
  redelivered: boolean;
  // how many times it failed transiently before (0 on its first delivery): the broker keeps
  // the count with the message, so it holds across processes
  attempts: number;
}>;

// The waits before a retry: the n-th retry waits the n-th (the last one from then on). The
// broker holds each waiting command outside the command queue (RabbitMQ: one queue per delay),
// so a waiting retry takes none of the consumer's slots.
export const RETRY_DELAYS_MS: readonly number[] = [200, 400, 800, 1600, 3200, 6400, 10_000];

// What becomes of a command: acknowledged (done, or done before), dead-lettered with the
// reason (it can never succeed), or sent to be tried again after one of RETRY_DELAYS_MS (a
// transient failure), as its `attempt`-th failure.
export type CommandOutcome =
  | Readonly<{ kind: 'ack' }>
  | Readonly<{ kind: 'dead'; reason: string }>
  | Readonly<{ kind: 'retry'; attempt: number; delayMs: number }>;

export type CommandHandler = (command: IncomingCommand) => Promise<CommandOutcome>;

export type BrokerPort = Readonly<{
  // Resolves once the broker has confirmed every message of the batch (persisted); rejects
  // when any was not, and the caller sends the batch again. Messages of one subject reach
  // each queue in the order of the batch.
  publishBatch: (messages: readonly OutgoingMessage[]) => Promise<void>;
  // Starts taking commands; the handler's outcome is applied after it resolves. Returns how
  // to stop (waiting for commands in progress).
  consumeCommands: (handler: CommandHandler) => () => Promise<void>;
  close: () => Promise<void>;
}>;
