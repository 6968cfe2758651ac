// task_runs: one row per run of a scheduled task, written when the run ends.
import type { Db, Queryable } from '../platform/db.ts';
import type { TaskRun } from './task.ts';

const INSERT_RUN = `
  INSERT INTO task_runs (task, started_at, duration_ms, outcome, result, trigger)
  VALUES ($1, $2, $3, $4, $5, $6)`;

// The latest run of each task.
const SELECT_LAST_RUNS = `
  SELECT DISTINCT ON (task) task, started_at, duration_ms, outcome, result, trigger
    FROM task_runs ORDER BY task, started_at DESC`;

// Enough history to see a pattern of failures, without growing for ever.
const PRUNE_RUNS = `DELETE FROM task_runs WHERE started_at < now() - $1 * interval '1 day'`;

type RunRow = {
  task: string;
  started_at: Date;
  duration_ms: number;
  outcome: TaskRun['outcome'];
  result: unknown;
  trigger: string;
};

export async function insertRun(db: Queryable, run: TaskRun): Promise<void> {
  await db.query(INSERT_RUN, [
    run.task,
    run.startedAt,
    run.durationMs,
    run.outcome,
    JSON.stringify(run.result ?? null),
    run.trigger,
  ]);
}

export async function selectLastRuns(db: Queryable): Promise<TaskRun[]> {
  const { rows } = await db.query<RunRow>(SELECT_LAST_RUNS);
  return rows.map((r) => ({
    task: r.task,
    startedAt: r.started_at,
    durationMs: r.duration_ms,
    outcome: r.outcome,
    result: r.result,
    trigger: r.trigger,
  }));
}

export async function pruneRuns(db: Queryable, keepDays: number): Promise<number> {
  const { rowCount } = await db.query(PRUNE_RUNS, [keepDays]);
  return rowCount ?? 0;
}

// VACUUM cannot run in a transaction and may take longer than the pool's statement timeout:
// it runs on a connection of its own with no timeout, which is restored before release.
export async function vacuumAnalyze(db: Db, tables: readonly string[]): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('SET statement_timeout = 0');
    await client.query(`VACUUM (ANALYZE) ${tables.join(', ')}`);
  } finally {
    await client.query('RESET statement_timeout').catch(() => {});
    client.release();
  }
}
