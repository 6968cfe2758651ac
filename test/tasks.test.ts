// Scheduled tasks: once per tick across instances (two job queues on one database, each
// scheduling and working the same task, as two servers do), runs recorded with their outcome
// and shown by `greenlight tasks list` and the metrics, and `greenlight tasks run`.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import prom from 'prom-client';
import { TASKS } from '../src/background.ts';
import { createPool } from '../src/platform/db.ts';
import { startJobs } from '../src/platform/jobs.ts';
import type { Task } from '../src/tasks/task.ts';
import { listTasks, registerTaskMetrics, runTask, startTasks, taskQueue } from '../src/tasks/tasks.ts';
import { captureLogger, createTestDatabase, createUser, testConfig } from './helpers.ts';
import { run } from './processes.ts';

const dsn = await createTestDatabase();
const db = createPool({ dsn, maxOpenConns: 4, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
after(() => db.end());
const { logger } = captureLogger();
const config = testConfig(dsn);

describe('scheduled tasks', () => {
  test('when two instances schedule the same task, then each tick runs it once', async () => {
    const ran: string[] = [];
    const task = (instance: string): Task => ({
      name: 'test-every-minute',
      cron: '* * * * *',
      run: async () => {
        ran.push(instance);
        return { instance };
      },
    });
    // pg-boss checks schedules every 30 s in production; here every second.
    const tuning = { cronMonitorIntervalSeconds: 1, cronWorkerIntervalSeconds: 1 };
    // The first check sends the tick of the minute it falls in, and a run comes seconds after
    // its tick: a run is of a minute from this one on, not of the one it was seen in.
    const scheduledFrom = Date.now();
    const instances = await Promise.all(
      ['a', 'b'].map(async (instance) => {
        const jobs = await startJobs(dsn, logger, [taskQueue(task(instance))], tuning);
        await startTasks(jobs, { db, logger, config }, [task(instance)]);
        return jobs;
      }),
    );
    after(() => Promise.all(instances.map((jobs) => jobs.stop({ graceful: false, wait: true }))));

    const started = performance.now();
    while (ran.length === 0) {
      if (performance.now() - started > 20_000) assert.fail('the task never ran');
      await sleep(50);
    }
    // Several more schedule checks by both instances.
    await sleep(4_000);
    const { rows } = await db.query<{ started_at: Date; trigger: string }>(
      `SELECT started_at, trigger FROM task_runs WHERE task = 'test-every-minute' ORDER BY id`,
    );
    assert.equal(rows.length, ran.length, 'every run recorded');
    // A new minute is a new tick: a run more is right only if the test crossed one.
    const ticks = 1 + Math.floor(Date.now() / 60_000) - Math.floor(scheduledFrom / 60_000);
    assert.ok(ran.length <= ticks, `${ran.length} runs in ${ticks} tick(s): ${ran.join(' ')}`);
    assert.deepEqual(
      rows.map((r) => r.trigger),
      ran.map(() => 'schedule'),
    );
  });

  test('when tasks succeed and fail, then the last run of each, its duration and outcome are listed and exported as metrics', async () => {
    const tasks: Task[] = [
      { name: 'test-ok', cron: '0 0 * * *', run: async () => ({ counted: 3 }) },
      {
        name: 'test-broken',
        cron: '0 0 * * *',
        run: async () => {
          throw new Error('the thing is broken');
        },
      },
      { name: 'test-never', cron: '0 0 * * *', run: async () => null },
    ];
    const ok = await runTask({ db, logger, config }, tasks[0] as Task, 'test');
    assert.equal(ok.outcome, 'succeeded');
    const broken = await runTask({ db, logger, config }, tasks[1] as Task, 'test');
    assert.equal(broken.outcome, 'failed');

    const listed = new Map((await listTasks(db, tasks)).map((s) => [s.task.name, s.last]));
    assert.equal(listed.get('test-ok')?.outcome, 'succeeded');
    assert.deepEqual(listed.get('test-ok')?.result, { counted: 3 });
    assert.ok((listed.get('test-ok')?.durationMs ?? -1) >= 0);
    assert.equal(listed.get('test-broken')?.outcome, 'failed');
    assert.equal(listed.get('test-broken')?.result, 'the thing is broken');
    assert.equal(listed.get('test-never'), undefined);

    const registry = new prom.Registry();
    registerTaskMetrics(registry, db, tasks);
    const text = await registry.metrics();
    assert.match(text, /^greenlight_task_last_success\{task="test-ok"\} 1$/m);
    assert.match(text, /^greenlight_task_last_success\{task="test-broken"\} 0$/m);
    assert.match(text, /^greenlight_task_last_duration_seconds\{task="test-ok"\} [\d.e-]+$/m);
    assert.match(text, /^greenlight_task_last_run_timestamp_seconds\{task="test-broken"\} \d+/m);
    assert.doesNotMatch(text, /test-never/);
  });

  test('when an operator runs a task and lists them, then it runs now and the list shows its outcome', async (t) => {
    const user = await createUser(db, {});
    await db.query(`UPDATE tokens SET expiry = now() - interval '1 minute' WHERE user_id = $1`, [user.id]);
    const cli = (...args: string[]) => run(t, ['tasks', ...args, '-db-dsn', dsn]);

    const cleanup = await cli('run', 'delete-expired-tokens');
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.match(
      cleanup.stdout,
      /^delete-expired-tokens\t\S+\t\d+ ms\tsucceeded\tcli:\S+\t\{"deleted":1\}$/m,
    );
    assert.equal((await db.query('SELECT 1 FROM tokens WHERE user_id = $1', [user.id])).rowCount, 0);
    const vacuum = await cli('run', 'vacuum-analyze');
    assert.equal(vacuum.code, 0, vacuum.stderr);

    const list = await cli('list');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^delete-expired-tokens\t\*\/15 \* \* \* \*\t\S+\t\d+ ms\tsucceeded\tcli:/m);
    assert.match(list.stdout, /^vacuum-analyze\t30 3 \* \* \*\t\S+\t\d+ ms\tsucceeded\t/m);
    assert.match(list.stdout, /^prune-task-runs\t45 3 \* \* \*\tnever run$/m);
    assert.equal(list.stdout.trim().split('\n').length, 1 + TASKS.length);

    const unknown = await cli('run', 'nothing');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /greenlight: unknown task "nothing"/);
  });
});
