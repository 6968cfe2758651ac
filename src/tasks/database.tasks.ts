// The database's own upkeep, which belongs to no business module: the nightly vacuum of every
// module's busiest tables, and forgetting old task runs (the tasks module's own table).
import type { Task } from './task.ts';
import { pruneRuns, vacuumAnalyze } from './tasks.sql.ts';

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

export const VACUUM_ANALYZE_TASK: Task = {
  name: 'vacuum-analyze',
  cron: '30 3 * * *',
  run: ({ db }) => vacuumAnalyze(db, HOT_TABLES),
};

export const PRUNE_TASK_RUNS_TASK: Task = {
  name: 'prune-task-runs',
  cron: '45 3 * * *',
  run: async ({ db }) => ({ deleted: await pruneRuns(db, 30) }),
};
