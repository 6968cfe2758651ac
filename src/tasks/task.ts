// A scheduled task: a name, a cron expression (UTC, five fields, pg-boss's cron-parser) and
// what it does. A module declares its tasks beside it (accounts/accounts.tasks.ts), e.g.
//   { name: 'prune-outbox', cron: '0 * * * *', run: ({ db }) => pruneOutbox(db) }
// and background.ts's TASKS lists every module's.
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';

export type TaskContext = Readonly<{ db: Db; logger: Logger; config: Config }>;

export type Task = Readonly<{
  // also the name of its pg-boss queue: letters, digits, - _ . /
  name: string;
  cron: string;
  // what it returns is stored with the run (a count, a summary); keep it small
  run: (context: TaskContext) => Promise<unknown>;
  // a run still going after this long is taken for dead and retried; default one hour
  timeoutSeconds?: number;
}>;

export type TaskOutcome = 'succeeded' | 'failed';

export type TaskRun = Readonly<{
  task: string;
  startedAt: Date;
  durationMs: number;
  outcome: TaskOutcome;
  result: unknown;
  trigger: string;
}>;
