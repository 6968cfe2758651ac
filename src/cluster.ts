// `serve -workers N`: the primary owns the database (embedded or not), forks N serving
// processes that share the listening port (node:cluster), replaces any that crash, and on
// SIGINT/SIGTERM asks each to shut down gracefully before it stops the database itself.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.ts';
import type { DatabaseServer } from './platform/database.ts';
import type { Logger } from './platform/logger.ts';

export function superviseWorkers(config: Config, logger: Logger, database: DatabaseServer): Promise<void> {
  // Each worker gets a share of the pool, so all of them together stay within
  // -db-max-open-conns (which the operator sizes under the server's max_connections).
  const poolShare = Math.max(2, Math.ceil(config.db.maxOpenConns / config.workers));
  cluster.setupPrimary({
    args: [...process.argv.slice(2), '-db-dsn', database.dsn, '-db-max-open-conns', String(poolShare)],
  });
  let shuttingDown = false;
  const fork = () => cluster.fork();
  cluster.on('exit', (worker: Worker, code, signal) => {
    if (shuttingDown) return;
    logger.error(
      { worker_pid: worker.process.pid, code, signal },
      'worker exited unexpectedly; starting another',
    );
    fork();
  });
  for (let i = 0; i < config.workers; i++) fork();
  logger.info({ workers: config.workers, pool_per_worker: poolShare }, 'started workers');

  const stop = async (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn({ signal }, 'second signal: exiting at once');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      logger.flush();
      process.exit(1);
    }
    shuttingDown = true;
    logger.info({ signal }, 'shutting down server');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            worker.once('exit', () => resolve());
            worker.send('shutdown');
          }),
      ),
    );
    await database.stop();
    logger.info('stopped server');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return Promise.resolve();
}
