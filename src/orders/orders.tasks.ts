// The scheduled tasks of orders (run by src/tasks; background.ts lists every module's). The
// timeout sweep is not one of them: it enqueues workflow steps, so it runs with the workflow's
// workers (orders.worker.ts).
import type { Task } from '../tasks/task.ts';
import { deleteExpiredKeys } from './idempotency-keys.sql.ts';

export const ORDERS_TASKS: readonly Task[] = [
  {
    name: 'delete-expired-idempotency-keys',
    cron: '7 * * * *',
    run: async ({ db }) => ({ deleted: await deleteExpiredKeys(db) }),
  },
];
