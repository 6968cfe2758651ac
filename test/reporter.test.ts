// The test reporter (test/reporter.ts) on a small synthetic run: real failures and known
// divergences (failing test.todo cases) under their own headings, the counts last, and the
// runner's exit code untouched.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ROOT } from './processes.ts';

const TODO = 'test/fixtures/reporter/todo.ts';
const FAILING = 'test/fixtures/reporter/failing.ts';

function runWithReporter(files: string[]): { status: number | null; output: string } {
  // Without the parent runner's NODE_TEST_CONTEXT the child is a runner of its own, not a file of ours.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const result = spawnSync(process.execPath, ['--test', '--test-reporter=./test/reporter.ts', ...files], {
    cwd: ROOT,
    env: { ...env, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, output: result.stdout };
}

test('when a run has a real failure and a failing todo, then each is listed under its own heading', () => {
  const { status, output } = runWithReporter([TODO, FAILING]);
  assert.equal(status, 1, output);
  const failing = output.indexOf('✖ failing tests:');
  const divergences = output.indexOf('⚠ known divergences (todo):');
  assert.ok(failing >= 0 && divergences > failing, output);
  const failingList = output.slice(failing, divergences);
  assert.match(failingList, /test at test\/fixtures\/reporter\/failing\.ts:5:3\n✖ fixture fails/);
  assert.match(failingList, /Error: fails on purpose/);
  assert.doesNotMatch(failingList, /known divergence/);
  const divergenceList = output.slice(divergences);
  assert.match(divergenceList, /test at test\/fixtures\/reporter\/todo\.ts:6:6\n⚠ fixture known divergence/);
  assert.match(divergenceList, /Error: diverges on purpose/);
  assert.doesNotMatch(divergenceList, /fixture fails/);
  assert.match(output, /ℹ tests 3\nℹ suites 1\nℹ pass 1\nℹ fail 1\n.*ℹ todo 1\nℹ duration_ms [\d.]+\n$/s);
});

test('when a run fails only todo cases, then it passes and has no failing tests heading', () => {
  const { status, output } = runWithReporter([TODO]);
  assert.equal(status, 0, output);
  assert.doesNotMatch(output, /failing tests/);
  assert.match(output, /⚠ known divergences \(todo\):\n\ntest at test\/fixtures\/reporter\/todo\.ts:6:6/);
  assert.match(output, /ℹ fail 0\n/);
});
