// Durable background work in PostgreSQL (pg-boss). A job is enqueued in the same
// transaction as the data it belongs to, so it exists exactly when that data does; it is
// retried with backoff until it succeeds, survives crashes, and runs once across every
// instance because the queue lives in the database.
import PgBoss from 'pg-boss';
import type { Queryable } from './db.ts';
import type { Logger } from './logger.ts';

export type Jobs = PgBoss;

export type QueueSpec = Readonly<{ name: string; options: Omit<PgBoss.Queue, 'name'> }>;

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
  boss.on('error', (err) => logger.error({ err }, 'job queue error'));
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
