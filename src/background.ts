// Background work of a serving process: the job queue, its workers (mail, the order workflow
// with its payment provider client) and the scheduled tasks.
import { ACCOUNTS_QUEUES } from './accounts/accounts.queues.ts';
import { ACCOUNTS_TASKS } from './accounts/accounts.tasks.ts';
import { startEmailWorker } from './accounts/email.worker.ts';
import type { Config } from './config.ts';
import { ORDERS_TASKS } from './orders/orders.tasks.ts';
import { startOrderWorkers } from './orders/orders.worker.ts';
import { ORDERS_QUEUES } from './orders/workflow.queue.ts';
import { createPaymentsClient, type PaymentsClient } from './payments/payments.ts';
import type { Db } from './platform/db.ts';
import { type Jobs, type QueueSpec, startJobs, stopJobs } from './platform/jobs.ts';
import type { Logger } from './platform/logger.ts';
import { createLogMailer, createSmtpMailer, type Mailer } from './platform/mailer.ts';
import type { Metrics } from './platform/metrics.ts';
import { POSTERS_TASKS } from './posters/posters.tasks.ts';
import { REALTIME_TASKS } from './realtime/realtime.tasks.ts';
import { PRUNE_TASK_RUNS_TASK, VACUUM_ANALYZE_TASK } from './tasks/database.tasks.ts';
import type { Task } from './tasks/task.ts';
import { registerTaskMetrics, startTasks, taskQueue } from './tasks/tasks.ts';

// The scheduled tasks (src/tasks), each declared by the module it serves and run once per
// tick across every instance; this order is `tasks list`'s. The callback expiry sweep is not
// one of them: pg-boss's cron ticks at most once a minute, which would keep objects up to
// 90 s under a 30 s TTL; it stays the callback service's one-second loop under an advisory
// lock (src/callbacks).
export const TASKS: readonly Task[] = [
  ...ACCOUNTS_TASKS,
  VACUUM_ANALYZE_TASK,
  ...POSTERS_TASKS,
  ...ORDERS_TASKS,
  ...REALTIME_TASKS,
  PRUNE_TASK_RUNS_TASK,
];

// The modules' job queues (their depth is in the metrics, app.ts), then one per task.
export const QUEUES: readonly QueueSpec[] = [...ACCOUNTS_QUEUES, ...ORDERS_QUEUES, ...TASKS.map(taskQueue)];

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
  let payments: PaymentsClient | undefined;
  return {
    jobs,
    startWorkers: async (db, metrics) => {
      await startEmailWorker(jobs, mailer, logger, metrics);
      payments = createPaymentsClient({ ...config.payments, logger, registry: metrics.registry });
      await startOrderWorkers({ db, jobs, payments, logger, metrics, config });
      await startTasks(jobs, { db, logger, config }, TASKS);
      registerTaskMetrics(metrics.registry, db, TASKS);
    },
    // Lets jobs in progress finish, for up to one more shutdown grace period.
    stop: async () => {
      await stopJobs(jobs, { graceful: true, wait: true, timeout: config.shutdownTimeoutMs });
      mailer.close();
      await payments?.close();
    },
  };
}
