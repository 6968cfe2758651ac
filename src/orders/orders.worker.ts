// Runs the order workflow in a serving process: pg-boss workers on the steps' queue
// (each job runs once across every process, however many serve), and the timeout sweep, ticked
// once a minute by pg-boss's cron (one process takes each tick).
import type PgBoss from 'pg-boss';
import type { Config } from '../config.ts';
import type { PaymentsClient } from '../payments/payments.ts';
import type { Db } from '../platform/db.ts';
import { type Jobs, runJob } from '../platform/jobs.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import { observeOrderChanges } from './order-events.ts';
import { orderMetrics } from './orders.metrics.ts';
import { expireStaleOrders } from './orders.sql.ts';
import { enqueueStep, ORDER_STEPS_QUEUE, ORDER_SWEEP_QUEUE, type StepJob, stepOf } from './workflow.queue.ts';
import { runStep, type WorkflowDeps } from './workflow.ts';

// Workers on the steps' queue per process, each taking up to STEP_BATCH jobs at a time and
// running them at once: most of a step is waiting for the provider or the database.
const STEP_WORKERS = 2;
const STEP_BATCH = 8;
// pg-boss waits its polling interval after every fetch, jobs found or not, unless the worker
// is notified: without wake-ups a worker would take one batch per interval, whatever the
// backlog. A worker that filled its batch is woken at once to fetch again (a backlog); the
// others wait until the interval ends or an order of this process changes (its next step may
// be due). Changes within WAKE_MS wake one worker, in turn: a fetch finds the steps of many
// orders, and fetching for every change would cost more than the steps (woken every 20 ms,
// W1's POST p99 was about 50 % higher at 95 orders/s).
const POLLING_INTERVAL_S = 0.5;
const WAKE_MS = 50;

export type OrderWorkerDeps = Readonly<{
  db: Db;
  jobs: Jobs;
  payments: PaymentsClient;
  logger: Logger;
  metrics: Metrics;
  config: Config;
}>;

export async function startOrderWorkers(deps: OrderWorkerDeps): Promise<void> {
  const { jobs, logger } = deps;
  const metrics = orderMetrics(deps.metrics.registry);
  const workflow: WorkflowDeps = { db: deps.db, jobs, payments: deps.payments, metrics };
  const runOne = async (job: PgBoss.Job<StepJob>): Promise<void> => {
    const { orderId, step } = job.data;
    const end = metrics.stepDuration.startTimer({ step });
    try {
      const outcome = await runJob(ORDER_STEPS_QUEUE, job, () => runStep(workflow, job.data));
      end({ outcome });
    } catch (err) {
      end({ outcome: 'failed' });
      deps.metrics.jobFailures.inc({ queue: ORDER_STEPS_QUEUE });
      logger.warn({ err, job_id: job.id, order_id: orderId, step }, 'order step failed; will retry');
      // Only this job is retried: pg-boss then completes the batch's others, not this one.
      // Should this fail too, the batch's handler throws, and pg-boss fails every job of it
      // that has not completed.
      await jobs.fail(ORDER_STEPS_QUEUE, job.id, { message: (err as Error).message });
    }
  };
  const workers: string[] = [];
  for (let i = 0; i < STEP_WORKERS; i++) {
    const id: string = await jobs.work<StepJob>(
      ORDER_STEPS_QUEUE,
      { batchSize: STEP_BATCH, pollingIntervalSeconds: POLLING_INTERVAL_S },
      async (batch) => {
        const ran = await Promise.allSettled(batch.map(runOne));
        if (batch.length === STEP_BATCH) jobs.notifyWorker(id);
        const failed = ran.find((result) => result.status === 'rejected');
        if (failed) throw failed.reason;
      },
    );
    workers.push(id);
  }
  let wakePending = false;
  let turn = 0;
  observeOrderChanges(deps.db, async () => {
    if (wakePending) return;
    wakePending = true;
    setTimeout(() => {
      wakePending = false;
      turn = (turn + 1) % workers.length;
      jobs.notifyWorker(workers[turn] as string);
    }, WAKE_MS).unref();
  });
  await jobs.schedule(ORDER_SWEEP_QUEUE, '* * * * *');
  await jobs.work(ORDER_SWEEP_QUEUE, async ([job]) => {
    if (!job) return;
    await runJob(ORDER_SWEEP_QUEUE, job, () => sweepStaleOrders(deps));
  });
}

// Orders in flight past -orders-timeout get a cancel asked for, and their current step is
// enqueued again, so they are compensated even if their own job were gone; a duplicate step
// is a no-op.
export async function sweepStaleOrders(deps: Pick<OrderWorkerDeps, 'db' | 'jobs' | 'logger' | 'config'>) {
  const stale = await expireStaleOrders(deps.db, deps.config.orders.timeoutMs);
  for (const order of stale) {
    const step = stepOf(order.status);
    if (step) await enqueueStep(deps.jobs, deps.db, { orderId: order.id, step });
  }
  if (stale.length > 0)
    deps.logger.info({ orders: stale.length }, 'orders past -orders-timeout are being cancelled');
  return { stale: stale.length };
}
