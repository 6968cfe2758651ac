// The workflow's job queue: one job per step of an order, enqueued in the transaction that
// commits the previous step's state change, so a crash between steps loses nothing and a step
// exists exactly when its order has reached it. Jobs are retried with backoff for as long as
// they fail (an unreachable payment provider), and a job whose process died is taken for lost
// after expireInSeconds and run again: every step is idempotent (workflow.ts).
import type { Queryable } from '../platform/db.ts';
import { inTransaction, type Jobs, type QueueSpec, withTraceContext } from '../platform/jobs.ts';
import type { OrderStatus } from './order.ts';

export const ORDER_STEPS_QUEUE = 'order-steps';
// The timeout sweep's queue, ticked by pg-boss's cron (once a minute at most).
export const ORDER_SWEEP_QUEUE = 'order-sweep';

// A step's attempt ends well within this (the provider call is bounded by the step's own
// deadline, workflow.ts), so a job still active after it belonged to a dead process.
export const STEP_EXPIRE_SECONDS = 10;

export const ORDERS_QUEUES: readonly QueueSpec[] = [
  {
    name: ORDER_STEPS_QUEUE,
    options: {
      // An order's chain must not die: a provider down for a day is retried for a day (the
      // timeout sweep then asks for the compensation, which the same chain performs).
      retryLimit: 100_000,
      retryDelay: 1,
      retryBackoff: true,
      // A failed step waits at most this long: after an outage every order moves again within
      // seconds (the payments client's breaker keeps the retries cheap while it lasts).
      retryDelayMax: 10,
      expireInSeconds: STEP_EXPIRE_SECONDS,
      deleteAfterSeconds: 24 * 3600,
    },
  },
  { name: ORDER_SWEEP_QUEUE, options: { retryLimit: 2, expireInSeconds: 60, deleteAfterSeconds: 3600 } },
];

// reserve: pending → reserved (or rejected); charge: reserved → paid (or cancelled when
// declined); confirm: paid → confirmed. Any of them compensates instead when a cancel was asked.
export const STEPS = ['reserve', 'charge', 'confirm'] as const;
export type Step = (typeof STEPS)[number];
export type StepJob = Readonly<{ orderId: number; step: Step }>;

// The status an order has while a step is due.
export const STEP_FROM: Readonly<Record<Step, OrderStatus>> = {
  reserve: 'pending',
  charge: 'reserved',
  confirm: 'paid',
};

export function stepOf(status: OrderStatus): Step | undefined {
  return STEPS.find((step) => STEP_FROM[step] === status);
}

export async function enqueueStep(jobs: Jobs, client: Queryable, job: StepJob): Promise<void> {
  await jobs.send(ORDER_STEPS_QUEUE, withTraceContext(job), inTransaction(client));
}
