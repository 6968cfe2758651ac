// Scheduled tasks on pg-boss: each task is a queue with a cron schedule. pg-boss's clock
// monitor sends one job per tick across every instance on the database (a singleton per
// schedule and minute), and a job is fetched by one worker, so a task runs once per tick
// however many processes schedule it. Every run, wherever it ran, is recorded in task_runs.
import prom from 'prom-client';
import type { Db } from '../platform/db.ts';
import { type Jobs, type QueueSpec, runJob } from '../platform/jobs.ts';
import type { Task, TaskContext, TaskRun } from './task.ts';
import { insertRun, selectLastRuns } from './tasks.sql.ts';

const DEFAULT_TIMEOUT_SECONDS = 3600;

// A failed run is not retried: the next tick is the retry, and a task that fails keeps
// saying so in `tasks list` and the metrics.
export function taskQueue(task: Task): QueueSpec {
  return {
    name: task.name,
    options: { retryLimit: 0, expireInSeconds: task.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS },
  };
}

// Runs `task` here and now, and records the run; a failure is recorded and returned, not thrown.
export async function runTask(context: TaskContext, task: Task, trigger: string): Promise<TaskRun> {
  const { db, logger } = context;
  const startedAt = new Date();
  const started = performance.now();
  const log = logger.child({ task: task.name });
  let run: TaskRun;
  try {
    const result = await task.run({ ...context, logger: log });
    run = {
      task: task.name,
      startedAt,
      durationMs: performance.now() - started,
      outcome: 'succeeded',
      result,
      trigger,
    };
    log.info({ duration_ms: run.durationMs, result }, 'task succeeded');
  } catch (err) {
    run = {
      task: task.name,
      startedAt,
      durationMs: performance.now() - started,
      outcome: 'failed',
      result: (err as Error).message,
      trigger,
    };
    log.error({ err, duration_ms: run.durationMs }, 'task failed');
  }
  await insertRun(db, run);
  return run;
}

// Works every task's queue and (re)writes its schedule. Queues come from taskQueue, created
// with the others by startJobs.
export async function startTasks(jobs: Jobs, context: TaskContext, tasks: readonly Task[]): Promise<void> {
  for (const task of tasks) {
    await jobs.work(task.name, async ([job]) => {
      if (!job) return;
      await runJob(task.name, job, () => runTask(context, task, 'schedule'));
    });
    await jobs.schedule(task.name, task.cron, undefined, { tz: 'UTC' });
  }
}

export type TaskStatus = Readonly<{ task: Task; last: TaskRun | undefined }>;

export async function listTasks(db: Db, tasks: readonly Task[]): Promise<TaskStatus[]> {
  const last = new Map((await selectLastRuns(db)).map((run) => [run.task, run]));
  return tasks.map((task) => ({ task, last: last.get(task.name) }));
}

export function findTask(tasks: readonly Task[], name: string): Task | undefined {
  return tasks.find((task) => task.name === name);
}

// The last run of each task as gauges, read from task_runs at scrape time: every instance
// reports the same, whichever of them ran it.
export function registerTaskMetrics(registry: prom.Registry, db: Db, tasks: readonly Task[]): void {
  // The three gauges are collected one after the other: one query serves a scrape.
  let read: { at: number; runs: Promise<TaskStatus[]> } | undefined;
  const lastRuns = () => {
    if (!read || performance.now() - read.at > 1000) {
      read = { at: performance.now(), runs: listTasks(db, tasks).catch(() => []) };
    }
    return read.runs;
  };
  const gauge = (name: string, help: string, value: (run: TaskRun) => number) =>
    new prom.Gauge({
      name,
      help,
      labelNames: ['task'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const { task, last } of await lastRuns()) if (last) this.set({ task: task.name }, value(last));
      },
    });
  gauge(
    'greenlight_task_last_run_timestamp_seconds',
    'When the last run of a scheduled task started',
    (run) => run.startedAt.getTime() / 1000,
  );
  gauge(
    'greenlight_task_last_duration_seconds',
    'How long the last run of a scheduled task took',
    (run) => run.durationMs / 1000,
  );
  gauge(
    'greenlight_task_last_success',
    '1 when the last run of a scheduled task succeeded, 0 when it failed',
    (run) => (run.outcome === 'succeeded' ? 1 : 0),
  );
}
