// The broker module's part of the app when -amqp-url is set: the event relay (which runs in
// one process at a time) and the command consumer (in every process), both started when the
// app is ready and stopped when it closes, before the pool. The service never waits for the
// broker: it serves while the broker is down, and the relay catches up once it is back.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import type { Config } from '../config.ts';
import type { OrdersDeps } from '../orders/orders.ts';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import { TOPICS } from '../realtime/topics.ts';
import type { WakeupSource } from '../realtime/wakeups.ts';
import { BrokerMetrics } from './broker.metrics.ts';
import { commandHandler } from './commands.ts';
import { rabbitmqBroker } from './rabbitmq.ts';
import { EventRelay } from './relay.ts';

export type BrokerOptions = Readonly<{
  config: Config;
  db: Db;
  logger: Logger;
  metrics: Metrics;
  // the job queue and metrics of orders.place, as the orders route has them
  orders: Omit<OrdersDeps, 'db'>;
  reauthenticate: (credential: Credential) => Promise<Identity>;
  wakeups: WakeupSource;
}>;

export const brokerPlugin = fp(
  async (app: FastifyInstance, options: BrokerOptions) => {
    const { config, db, orders, reauthenticate, wakeups } = options;
    const logger = options.logger.child({ module: 'broker' });
    const broker = rabbitmqBroker(config.broker, logger);
    const metrics = new BrokerMetrics(options.metrics.registry);
    const relay = new EventRelay({
      db,
      broker,
      topics: TOPICS,
      wakeups,
      exchange: config.broker.exchange,
      pollMs: config.broker.relayPollMs,
      logger,
      metrics,
    });
    let stopCommands: (() => Promise<void>) | undefined;
    app.addHook('onReady', async () => {
      relay.start();
      if (config.broker.commandsQueue === '') return;
      const operations = config.operations;
      const handler = commandHandler({ db, orders, operations, reauthenticate, logger, metrics });
      stopCommands = broker.consumeCommands(handler);
    });
    app.addHook('onClose', async () => {
      await stopCommands?.();
      await relay.stop();
      await broker.close();
    });
  },
  { name: 'broker' },
);
