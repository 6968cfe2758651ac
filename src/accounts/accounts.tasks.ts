// The scheduled tasks of accounts (run by src/tasks; background.ts lists every module's).
import type { Task } from '../tasks/task.ts';
import { forgetOldLoginFailures } from './login-throttle.ts';
import { deleteExpiredTokens } from './tokens.sql.ts';

export const ACCOUNTS_TASKS: readonly Task[] = [
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
];
