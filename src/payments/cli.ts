// `greenlight payments stand-in`: the stand-in payment provider as a process of its own, for
// development and for tests that run the service as processes. It logs its URL once it
// listens ("payments stand-in started") and stops on SIGINT or SIGTERM.
import type { Config } from '../config.ts';
import type { Logger } from '../platform/logger.ts';
import { onStopSignals } from '../platform/signals.ts';
import { startPaymentsStandIn } from './stand-in.ts';

export async function servePaymentsStandIn(config: Config, logger: Logger): Promise<void> {
  const standIn = await startPaymentsStandIn({ ...config.payments.standIn, logger });
  logger.info({ url: standIn.url, behaviour: standIn.behaviour }, 'payments stand-in started');
  onStopSignals({
    first: (signal) => {
      logger.info({ signal }, 'shutting down');
      standIn.close().then(
        () => {
          logger.info('stopped');
          logger.flush();
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          logger.flush();
          process.exit(1);
        },
      );
    },
    second: (signal) => {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(1);
    },
  });
}
