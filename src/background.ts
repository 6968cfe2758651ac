// Background work of a serving process: the job queue, its workers and the scheduled tasks.
import { EMAIL_QUEUE } from './accounts/accounts.ts';
import { EMAIL_QUEUE_OPTIONS, startEmailWorker } from './accounts/email.worker.ts';
import { forgetOldLoginFailures } from './accounts/login-throttle.ts';
import { deleteExpiredTokens } from './accounts/tokens.sql.ts';
import type { Config } from './config.ts';
import type { Db } from './platform/db.ts';
import { type Jobs, type QueueSpec, startJobs } from './platform/jobs.ts';
import type { Logger } from './platform/logger.ts';
import { createLogMailer, createSmtpMailer, type Mailer } from './platform/mailer.ts';
import type { Metrics } from './platform/metrics.ts';
import { createPosters, purgePosterObjects } from './posters/posters.ts';
import { pruneEvents } from './realtime/events.ts';
import { TOPICS } from './realtime/topics.ts';
import type { Task } from './tasks/task.ts';
import { pruneRuns, vacuumAnalyze } from './tasks/tasks.sql.ts';
import { registerTaskMetrics, startTasks, taskQueue } from './tasks/tasks.ts';

// The tables that take most writes, vacuumed and analysed nightly so that autovacuum's
// thresholds never leave their statistics or visibility maps far behind.
const HOT_TABLES = [
  'movies',
  'tokens',
  'users',
  'users_permissions',
  'audit_events',
  'callback_batches',
  'callback_objects',
  'products',
  'api_keys',
  'login_throttle',
  'movie_posters',
  'movie_events',
  'product_events',
];

// The scheduled tasks (src/tasks), each run once per tick across every instance. The
// callback expiry sweep is not one of them: pg-boss's cron ticks at most once a minute,
// which would keep objects up to 90 s under a 30 s TTL; it stays the callback service's
// one-second loop under an advisory lock (src/callbacks).
export const TASKS: readonly Task[] = [
  {
    name: 'delete-expired-tokens',
    cron: '*/15 * * * *',
    run: async ({ db }) => ({ deleted: await deleteExpiredTokens(db) }),
  },
  {
    name: 'prune-login-throttle',
    cron: '*/15 * * * *',
    run: async ({ db }) => ({ deleted: await forgetOldLoginFailures(db) }),
  },
  { name: 'vacuum-analyze', cron: '30 3 * * *', run: ({ db }) => vacuumAnalyze(db, HOT_TABLES) },
  {
    // Stored posters whose removal failed (or whose upload died) are retried here.
    name: 'purge-poster-objects',
    cron: '*/5 * * * *',
    run: async ({ db, config, logger }) => {
      const posters = createPosters(db, config.posters, logger);
      let deleted = 0;
      for (
        let batch = await purgePosterObjects(posters);
        batch > 0;
        batch = await purgePosterObjects(posters)
      ) {
        deleted += batch;
      }
      return { deleted };
    },
  },
  // Each topic's events older than -events-retention go (prune-movie-events,
  // prune-product-events); a resume from before them is told of the gap.
  ...TOPICS.map(
    (topic): Task => ({
      name: `prune-${topic.outbox.table.replace('_', '-')}`,
      cron: '*/10 * * * *',
      run: async ({ db, config }) => ({
        deleted: await pruneEvents(db, topic, new Date(Date.now() - config.events.retentionMs)),
      }),
    }),
  ),
  {
    name: 'prune-task-runs',
    cron: '45 3 * * *',
    run: async ({ db }) => ({ deleted: await pruneRuns(db, 30) }),
  },
];

export const QUEUES: readonly QueueSpec[] = [
  { name: EMAIL_QUEUE, options: EMAIL_QUEUE_OPTIONS },
  ...TASKS.map(taskQueue),
];

export function createMailer(config: Config, logger: Logger): Mailer {
  return config.smtp.host === '' ? createLogMailer(logger) : createSmtpMailer(config.smtp);
}

export async function startBackground(
  config: Config,
  dsn: string,
  logger: Logger,
): Promise<{
  jobs: Jobs;
  startWorkers: (db: Db, metrics: Metrics) => Promise<void>;
  stop: () => Promise<void>;
}> {
  const jobs = await startJobs(dsn, logger, QUEUES);
  const mailer = createMailer(config, logger);
  return {
    jobs,
    startWorkers: async (db, metrics) => {
      await startEmailWorker(jobs, mailer, logger, metrics);
      await startTasks(jobs, { db, logger, config }, TASKS);
      registerTaskMetrics(metrics.registry, db, TASKS);
    },
    // Lets jobs in progress finish, for up to one more shutdown grace period.
    stop: async () => {
      await jobs.stop({ graceful: true, wait: true, timeout: config.shutdownTimeoutMs });
      mailer.close();
    },
  };
}
