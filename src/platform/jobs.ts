// Durable background work in PostgreSQL (pg-boss). A job is enqueued in the same
// transaction as the data it belongs to, so it exists exactly when that data does; it is
// retried with backoff until it succeeds, survives crashes, and runs once across every
// instance because the queue lives in the database.
import PgBoss from 'pg-boss';
import type { Queryable } from './db.ts';
import type { Logger } from './logger.ts';
import { currentTraceContext, inSpan, type TraceCarrier } from './tracing.ts';

export type Jobs = PgBoss;

export type QueueSpec = Readonly<{ name: string; options: Omit<PgBoss.Queue, 'name'> }>;

// Job queues being stopped: their pool's last connections may meet the database shutting down
// right behind them ("terminating connection due to administrator command"), which is no error.
const stopping = new WeakSet<Jobs>();

export async function stopJobs(jobs: Jobs, options: PgBoss.StopOptions): Promise<void> {
  stopping.add(jobs);
  await jobs.stop(options);
}

// `tuning` overrides pg-boss options (the tests' shorter cron intervals).
export async function startJobs(
  dsn: string,
  logger: Logger,
  queues: readonly QueueSpec[],
  tuning: Partial<PgBoss.ConstructorOptions> = {},
): Promise<Jobs> {
  const boss = new PgBoss({
    connectionString: dsn,
    max: 4,
    application_name: 'greenlight-jobs',
    // How often expired jobs (their worker died) are found and retried: pg-boss checks every
    // minute by default, which would leave a mail caught in a crash waiting minutes.
    superviseIntervalSeconds: 2,
    monitorIntervalSeconds: 2,
    ...tuning,
  });
  boss.on('error', (err) => {
    if (stopping.has(boss)) logger.debug({ err }, 'job queue error while stopping');
    else logger.error({ err }, 'job queue error');
  });
  await boss.start();
  for (const queue of queues) {
    const existing = await boss.getQueue(queue.name);
    if (existing) await boss.updateQueue(queue.name, queue.options);
    else await boss.createQueue(queue.name, queue.options);
  }
  return boss;
}

// Lets pg-boss write the job through the caller's transaction.
export function inTransaction(client: Queryable): PgBoss.ConnectionOptions {
  return { db: { executeSql: (text, values) => client.query(text, values) } };
}

// pg-boss has no message headers, so the enqueuing request's trace context rides in the job's
// data (its sampling decision too); nothing is added when tracing is off.
export function withTraceContext<T extends object>(data: T): T & { trace?: TraceCarrier } {
  const carrier = currentTraceContext();
  return carrier.traceparent ? { ...data, trace: carrier } : data;
}

// Runs a job inside a consumer span, the child of the enqueuing request's span when the job
// carries its context (no instrumentation exists for pg-boss, so the span is made here).
export function runJob<T>(queue: string, job: PgBoss.Job<unknown>, work: () => Promise<T>): Promise<T> {
  const data = job.data as { trace?: TraceCarrier } | null | undefined;
  return inSpan(
    `${queue} process`,
    {
      kind: 'CONSUMER',
      from: data?.trace ?? {},
      attributes: {
        'messaging.system': 'pg-boss',
        'messaging.operation.type': 'process',
        'messaging.destination.name': queue,
        'messaging.message.id': job.id,
      },
    },
    work,
  );
}
