// Background work of a serving process: the job queue, its workers and schedules.
import { EMAIL_QUEUE } from './accounts/accounts.ts';
import { EMAIL_QUEUE_OPTIONS, startEmailWorker } from './accounts/email.worker.ts';
import { deleteExpiredTokens } from './accounts/tokens.sql.ts';
import type { Config } from './config.ts';
import type { Db } from './platform/db.ts';
import { type Jobs, type QueueSpec, startJobs } from './platform/jobs.ts';
import type { Logger } from './platform/logger.ts';
import { createLogMailer, createSmtpMailer, type Mailer } from './platform/mailer.ts';
import type { Metrics } from './platform/metrics.ts';
import { createPosters, purgePosterObjects } from './posters/posters.ts';

export const TOKEN_CLEANUP_QUEUE = 'delete-expired-tokens';
export const POSTER_PURGE_QUEUE = 'purge-poster-objects';

export const QUEUES: readonly QueueSpec[] = [
  { name: EMAIL_QUEUE, options: EMAIL_QUEUE_OPTIONS },
  { name: TOKEN_CLEANUP_QUEUE, options: { retryLimit: 3, retryDelay: 60, expireInSeconds: 300 } },
  { name: POSTER_PURGE_QUEUE, options: { retryLimit: 1, retryDelay: 60, expireInSeconds: 300 } },
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
      await jobs.work(TOKEN_CLEANUP_QUEUE, async () => {
        logger.info({ deleted: await deleteExpiredTokens(db) }, 'deleted expired tokens');
      });
      await jobs.schedule(TOKEN_CLEANUP_QUEUE, '*/15 * * * *');
      // Stored posters whose removal failed (or whose upload died) are retried here.
      const posters = createPosters(db, config.posters, logger);
      await jobs.work(POSTER_PURGE_QUEUE, async () => {
        let deleted = 0;
        for (
          let batch = await purgePosterObjects(posters);
          batch > 0;
          batch = await purgePosterObjects(posters)
        ) {
          deleted += batch;
        }
        if (deleted > 0) logger.info({ deleted }, 'deleted orphaned poster objects');
      });
      await jobs.schedule(POSTER_PURGE_QUEUE, '*/5 * * * *');
    },
    // Lets jobs in progress finish, for up to one more shutdown grace period.
    stop: async () => {
      await jobs.stop({ graceful: true, wait: true, timeout: config.shutdownTimeoutMs });
      mailer.close();
    },
  };
}
