// `greenlight callbacks [upstream | client]`: the callback service alone (for deployments
// that scale it apart from the API), and the stand-ins for its two peers.
import type { Config } from '../config.ts';
import { openDatabaseServer } from '../platform/database.ts';
import type { Logger } from '../platform/logger.ts';
import { Migrator } from '../platform/migrations.ts';
import { stopTracing } from '../platform/tracing.ts';
import { startCallbacks } from './listener.ts';
import { runStandInClient, StandInUpstream } from './stand-in.ts';

// SIGINT/SIGTERM run `stop` once; a second signal exits at once.
function onSignals(logger: Logger, stop: () => Promise<void>): void {
  let signals = 0;
  const handle = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down');
    stop()
      .then(stopTracing)
      .then(() => {
        logger.info('stopped');
        logger.flush();
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      });
  };
  process.on('SIGINT', handle);
  process.on('SIGTERM', handle);
}

export async function serveCallbacks(config: Config, logger: Logger): Promise<void> {
  const database = await openDatabaseServer(config, logger);
  try {
    if (config.db.migrate) await new Migrator(database.dsn).up();
    const callbacks = await startCallbacks({ config, dsn: database.dsn, logger });
    onSignals(logger, async () => {
      await callbacks.stop();
      await database.stop();
    });
  } catch (err) {
    await database.stop();
    throw err;
  }
}

export async function serveStandInUpstream(config: Config, logger: Logger): Promise<void> {
  const url = new URL(config.callbacks.upstream);
  const upstream = new StandInUpstream();
  const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname.replace(/^\[|\]$/g, '');
  const address = await upstream.listen(Number(url.port || 80), host);
  logger.info({ url: address, behaviour: upstream.behaviour }, 'stand-in upstream started');
  onSignals(logger, () => upstream.close());
}

export function runCallbackClient(config: Config, logger: Logger): Promise<void> {
  const listen = config.callbacks.listen;
  if (!listen) throw new Error('-callbacks-addr is empty: nothing to post to');
  const host =
    listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const target = `http://${host}:${listen.port}`;
  const stopping = new AbortController();
  logger.info({ target, interval_ms: config.callbacks.clientIntervalMs }, 'stand-in client started');
  onSignals(logger, async () => stopping.abort());
  return runStandInClient(target, config.callbacks.clientIntervalMs, logger, stopping.signal);
}
