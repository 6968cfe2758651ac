// `serve -workers N`: the primary starts (or finds) the database and migrates it, forks N
// serving processes that share the listening port (node:cluster), replaces any that crash,
// and on SIGINT/SIGTERM has every worker stop accepting, then asks each to shut down
// gracefully, and then stops the database.
// Workers run the migrator too where it is on; it finds nothing to do.
import cluster, { type Worker } from 'node:cluster';
import { getCompileCacheDir } from 'node:module';
import type { Config } from './config.ts';
import type { DatabaseServer } from './platform/database.ts';
import type { Logger } from './platform/logger.ts';
import { onStopSignals } from './platform/signals.ts';
import { stopTracing } from './platform/tracing.ts';

// V8 tunes its heap for throughput on a machine with memory to spare: semi-spaces of tens of
// MiB, and an old generation allowed to grow to about three times what is live before it is
// collected. Busy workers then held about 290 MiB resident with 33 MiB live. Capping the
// semi-spaces at 8 MiB and the old generation's growth at 30 % brought that to about
// 160 MiB, for about 1 % of S1 and 5 % of S2 (docs/performance.md). A value the operator
// sets on the command line or in NODE_OPTIONS wins.
const WORKER_V8_FLAGS: ReadonlyArray<readonly [setting: string, flag: string]> = [
  ['semi-space-size', '--max-semi-space-size=8'],
  ['heap-growing-percent', '--heap-growing-percent=30'],
];

export function workerExecArgv(execArgv: readonly string[], nodeOptions: string): string[] {
  const given = [...execArgv, nodeOptions].join(' ');
  const ours = WORKER_V8_FLAGS.filter(([setting]) => !given.includes(setting)).map(([, flag]) => flag);
  return [...execArgv, ...ours];
}

// glibc gives each thread that allocates an arena of its own, up to eight per core, and hands
// little of them back: with V8's background threads and libuv's pool, a worker held about
// 10 MiB more after 60 s of S2 than with two arenas, which cost no throughput measured
// (docs/performance.md). A value the operator sets wins.
export function workerEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return env.MALLOC_ARENA_MAX === undefined ? { MALLOC_ARENA_MAX: '2' } : {};
}

export function superviseWorkers(config: Config, logger: Logger, database: DatabaseServer): Promise<void> {
  // Each worker gets a share of the pool, so all of them together stay within
  // -db-max-open-conns (which the operator sizes under the server's max_connections).
  const poolShare = Math.max(2, Math.ceil(config.db.maxOpenConns / config.workers));
  // The DSN (with its password) goes through the environment, not the command line that
  // `ps` shows; a -db-dsn flag, if given, names the same server anyway.
  const args = [...process.argv.slice(2), '-db-max-open-conns', String(poolShare)];
  const execArgv = workerExecArgv(process.execArgv, process.env.NODE_OPTIONS ?? '');

  let shuttingDown = false;
  const startedAt = new Map<Worker, number>();
  let quickFailures = 0;
  // The callback service runs in one worker, the first, and in its replacement if it dies:
  // ids are then deduplicated across all of the instance's callbacks, each is looked up once
  // (not once per worker), and the listener's answers do not wait behind API work in a
  // second process (docs/decisions.md).
  let callbacksWorker: Worker | undefined;
  const fork = () => {
    const runsCallbacks = config.callbacks.enabled && callbacksWorker === undefined;
    cluster.setupPrimary({ args: runsCallbacks ? args : [...args, '-callbacks-enabled=false'], execArgv });
    // With the primary's compile cache a worker never loads the TypeScript stripper (main.ts).
    const compileCache = getCompileCacheDir();
    const worker = cluster.fork({
      ...workerEnv(process.env),
      GREENLIGHT_DB_DSN: database.dsn,
      ...(compileCache ? { NODE_COMPILE_CACHE: compileCache } : {}),
    });
    if (runsCallbacks) callbacksWorker = worker;
    startedAt.set(worker, Date.now());
  };

  const exitNow = (signal: NodeJS.Signals) => {
    logger.warn({ signal }, 'second signal: exiting at once');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
    logger.flush();
    process.exit(1);
  };
  const stop = async (signal: NodeJS.Signals, exitCode = 0) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down server');
    await stopInstance(database, logger);
    process.exit(exitCode);
  };

  cluster.on('exit', (worker: Worker, code, signal) => {
    if (worker === callbacksWorker) callbacksWorker = undefined;
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
  onStopSignals({ first: (signal) => void stop(signal), second: exitNow });
  return Promise.resolve();
}

// The workers, then the embedded database (if any) and tracing.
async function stopInstance(database: DatabaseServer, logger: Logger): Promise<void> {
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  // Every listener closes before any worker tells a client `Connection: close`: the
  // client's next connection would otherwise be queued on a sibling's listener that is
  // about to close, and closing a listener resets what is queued on it.
  await Promise.all(workers.map((worker) => stopAccepting(worker)));
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
  await stopTracing();
  logger.info('stopped server');
  logger.flush();
}

// A worker that does not answer within STOP_ACCEPTING_MS (busy, or still starting) is asked to
// shut down anyway.
const STOP_ACCEPTING_MS = 2_000;

function stopAccepting(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', done);
      resolve();
    };
    const onMessage = (message: unknown) => {
      if (message === 'accepting-stopped') done();
    };
    const timer = setTimeout(done, STOP_ACCEPTING_MS);
    worker.on('message', onMessage);
    worker.once('exit', done);
    worker.send('stop-accepting');
  });
}
