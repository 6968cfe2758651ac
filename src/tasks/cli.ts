// `greenlight tasks list | run NAME`: the scheduled tasks with their last run (from any
// instance), and one run now, in this process, recorded like a scheduled one.
import { userInfo } from 'node:os';
import type { Task, TaskContext, TaskRun } from './task.ts';
import { findTask, listTasks, runTask } from './tasks.ts';

export const TASKS_USAGE = 'usage: greenlight tasks list | run NAME';

export const TASKS_ARITY: Readonly<Record<string, number>> = { list: 0, run: 1 };

// An unknown task, or a run that failed (the command exits 1).
export class TaskCommandError extends Error {}

function describeRun(run: TaskRun): string {
  return [
    run.startedAt.toISOString(),
    `${Math.round(run.durationMs)} ms`,
    run.outcome,
    run.trigger,
    JSON.stringify(run.result),
  ].join('\t');
}

export async function tasksCommand(
  context: TaskContext,
  tasks: readonly Task[],
  [action, name = '']: readonly string[],
  print: (text: string) => void,
): Promise<void> {
  if (action === 'list') {
    print(['task', 'cron', 'last run', 'duration', 'outcome', 'trigger', 'result'].join('\t'));
    for (const { task, last } of await listTasks(context.db, tasks)) {
      print(`${task.name}\t${task.cron}\t${last ? describeRun(last) : 'never run'}`);
    }
    return;
  }
  const task = findTask(tasks, name);
  if (!task) throw new TaskCommandError(`unknown task "${name}" (${tasks.map((t) => t.name).join(', ')})`);
  const run = await runTask(context, task, `cli:${userInfo().username}`);
  print(`${task.name}\t${describeRun(run)}`);
  if (run.outcome === 'failed') throw new TaskCommandError(`task ${task.name} failed: ${run.result}`);
}
