// Runs the order workflow in a serving process: a few pg-boss workers on the steps' queue
// (each job runs once across every process, however many serve), and the timeout sweep, ticked
// once a minute by pg-boss's cron (one process takes each tick).
import type { Config } from '../config.ts';
import type { PaymentsClient } from '../payments/payments.ts';
import type { Db } from '../platform/db.ts';
import { type Jobs, runJob } from '../platform/jobs.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import { orderMetrics } from './orders.metrics.ts';
import { expireStaleOrders } from './orders.sql.ts';
import { enqueueStep, ORDER_STEPS_QUEUE, ORDER_SWEEP_QUEUE, type StepJob, stepOf } from './workflow.queue.ts';
import { runStep, type WorkflowDeps } from './workflow.ts';

// Steps in progress at once per process: most of a step is waiting for the provider.
const STEP_WORKERS = 8;

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
  for (let i = 0; i < STEP_WORKERS; i++) {
    await jobs.work<StepJob>(ORDER_STEPS_QUEUE, { pollingIntervalSeconds: 0.5 }, async ([job]) => {
      if (!job) return;
      const { orderId, step } = job.data;
      const end = metrics.stepDuration.startTimer({ step });
      try {
        const outcome = await runJob(ORDER_STEPS_QUEUE, job, () => runStep(workflow, job.data));
        end({ outcome });
      } catch (err) {
        end({ outcome: 'failed' });
        deps.metrics.jobFailures.inc({ queue: ORDER_STEPS_QUEUE });
        logger.warn({ err, job_id: job.id, order_id: orderId, step }, 'order step failed; will retry');
        throw err;
      }
    });
  }
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
