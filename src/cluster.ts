// `serve -workers N`: the primary starts (or finds) the database and migrates it, forks N
// serving processes that share the listening port (node:cluster), replaces any that crash,
// and on SIGINT/SIGTERM asks each to shut down gracefully before it stops the database.
// Workers run the migrator too where it is on; it finds nothing to do.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.ts';
import type { DatabaseServer } from './platform/database.ts';
import type { Logger } from './platform/logger.ts';

// V8 sizes the young generation from the machine's memory (semi-spaces of tens of MiB on
// this 24 GiB machine), so a busy worker reached about 290 MiB resident. Capped at 8 MiB
// it peaked at about 185 MiB, for about 2 % of throughput (docs/performance.md). A value
// the operator sets on the command line or in NODE_OPTIONS wins.
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string): string[] {
  const chosen = [...execArgv, nodeOptions].some((arg) => arg.includes('semi-space-size'));
  return chosen ? [...execArgv] : [...execArgv, '--max-semi-space-size=8'];
}

export function superviseWorkers(config: Config, logger: Logger, database: DatabaseServer): Promise<void> {
  // Each worker gets a share of the pool, so all of them together stay within
  // -db-max-open-conns (which the operator sizes under the server's max_connections).
  const poolShare = Math.max(2, Math.ceil(config.db.maxOpenConns / config.workers));
  // The DSN (with its password) goes through the environment, not the command line that
  // `ps` shows; a -db-dsn flag, if given, names the same server anyway.
  cluster.setupPrimary({
    args: [...process.argv.slice(2), '-db-max-open-conns', String(poolShare)],
    execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS ?? ''),
  });

  let shuttingDown = false;
  const startedAt = new Map<Worker, number>();
  let quickFailures = 0;
  const fork = () => startedAt.set(cluster.fork({ GREENLIGHT_DB_DSN: database.dsn }), Date.now());

  const stop = async (signal: NodeJS.Signals, exitCode = 0) => {
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
    process.exit(exitCode);
  };

  cluster.on('exit', (worker: Worker, code, signal) => {
    if (shuttingDown) return;
    // A worker that dies at once (port taken, database gone) would die again at once:
    // retry after a growing pause, and give up after five quick failures in a row.
    const quick = Date.now() - (startedAt.get(worker) ?? 0) < 5_000;
    startedAt.delete(worker);
    quickFailures = quick ? quickFailures + 1 : 0;
    if (quickFailures >= 5) {
      logger.fatal({ code, signal }, 'workers keep failing at start-up; stopping');
      void stop('SIGTERM', 1);
      return;
    }
    logger.error(
      { worker_pid: worker.process.pid, code, signal },
      'worker exited unexpectedly; starting another',
    );
    setTimeout(fork, quick ? 1000 * quickFailures : 0);
  });

  for (let i = 0; i < config.workers; i++) fork();
  logger.info({ workers: config.workers, pool_per_worker: poolShare }, 'started workers');
  process.on('SIGINT', (signal) => void stop(signal));
  process.on('SIGTERM', (signal) => void stop(signal));
  return Promise.resolve();
}
