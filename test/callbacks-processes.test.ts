// The callback service as processes: started by `serve` and by `greenlight callbacks`,
// killed, restarted and stopped; and the stand-in upstream and client commands.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { range, startTestCallbacks, startUpstream } from './callbacks-helpers.ts';
import { createTestDatabase, waitFor } from './helpers.ts';
import { freePort, greenlight, startServer } from './processes.ts';

async function queryOnce<R extends pg.QueryResultRow>(dsn: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: dsn });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

const batches = (dsn: string) =>
  queryOnce<{ object_ids: string[]; claimed: boolean; claimed_until: Date | null }>(
    dsn,
    'SELECT object_ids, claimed_until > now() AS claimed, claimed_until FROM callback_batches',
  );

const post = (port: number, ids: number[]) =>
  fetch(`http://127.0.0.1:${port}/callback`, { method: 'POST', body: JSON.stringify({ object_ids: ids }) });

test('when a callback was stored before a SIGKILL of serve, then `greenlight callbacks` processes it after the restart', async (t) => {
  const dsn = await createTestDatabase();
  const { upstream, url } = await startUpstream({ mode: 'hang' });
  const port = await freePort();
  const flags = ['-db-dsn', dsn, '-callbacks-addr', `127.0.0.1:${port}`, '-callbacks-upstream', url];
  const server = await startServer(t, [
    ...flags,
    '-callbacks-lease',
    '1s',
    '-callbacks-upstream-timeout',
    '20s',
  ]);
  await server.waitForLog('callback service started');

  const res = await post(port, [2, 3, 4]);
  assert.equal(res.status, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
  assert.match(metrics, /^greenlight_callbacks_received_total 1$/m);
  await waitFor('the lookups to reach the upstream', () => upstream.totalRequests === 3);
  assert.equal((await batches(dsn))[0]?.claimed, true);

  server.child.kill('SIGKILL');
  await server.waitForExit(5_000);
  assert.deepEqual(
    (await batches(dsn)).map((b) => b.object_ids.map(Number)),
    [[2, 3, 4]],
  );

  upstream.behaviour.mode = 'normal';
  const alone = greenlight(t, ['callbacks', '-env', 'development', ...flags, '-callbacks-lease', '1s']);
  await alone.waitForLog('callback service started');
  await waitFor('the callback to be processed', async () => (await batches(dsn)).length === 0, 10_000);
  const stored = await queryOnce<{ object_id: string }>(
    dsn,
    'SELECT object_id FROM callback_objects ORDER BY 1',
  );
  assert.deepEqual(
    stored.map((r) => Number(r.object_id)),
    [2, 4],
  );

  alone.child.kill('SIGTERM');
  assert.deepEqual(await alone.waitForExit(10_000), { code: 0, signal: null });
  assert.ok(alone.logs.some((l) => l.msg === 'stopped'));
});

test('when SIGTERM arrives while lookups hang, then the process exits within the grace period and hands its callbacks back', async (t) => {
  const dsn = await createTestDatabase();
  const { upstream, url } = await startUpstream({ mode: 'hang' });
  const port = await freePort();
  const proc = greenlight(t, [
    'callbacks',
    '-env',
    'development',
    '-db-dsn',
    dsn,
    '-callbacks-addr',
    `127.0.0.1:${port}`,
    '-callbacks-upstream',
    url,
    '-callbacks-lease',
    '60s',
    '-callbacks-upstream-timeout',
    '20s',
    '-shutdown-timeout',
    '500ms',
  ]);
  await proc.waitForLog('callback service started');
  assert.equal((await post(port, range(1, 10))).status, 200);
  await waitFor('the lookups to reach the upstream', () => upstream.totalRequests === 10);
  assert.equal((await batches(dsn))[0]?.claimed, true);

  proc.child.kill('SIGTERM');
  assert.deepEqual(await proc.waitForExit(5_000), { code: 0, signal: null });
  const [left] = await batches(dsn);
  assert.deepEqual(left?.object_ids.map(Number), range(1, 10));
  assert.equal(left?.claimed, false, 'handed back rather than left claimed for the lease');
});

test('when the stand-in upstream and client run, then objects are answered as the task says and callbacks are posted', async (t) => {
  const upstreamPort = await freePort();
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const upstream = greenlight(t, ['callbacks', 'upstream', '-callbacks-upstream', upstreamUrl]);
  await upstream.waitForLog('stand-in upstream started');
  const started = performance.now();
  const answer = await fetch(`${upstreamUrl}/objects/4`);
  assert.ok(performance.now() - started >= 290, 'answered after at least 300 ms');
  assert.equal(answer.status, 200);
  assert.match(answer.headers.get('content-type') ?? '', /^text\/plain/);
  assert.deepEqual(JSON.parse(await answer.text()), { id: 4, online: true });
  assert.deepEqual(JSON.parse(await (await fetch(`${upstreamUrl}/objects/7`)).text()), {
    id: 7,
    online: false,
  });

  const callbacks = await startTestCallbacks(upstreamUrl, { flags: ['-callbacks-ttl', '30s'] });
  const client = greenlight(t, [
    'callbacks',
    'client',
    '-callbacks-addr',
    callbacks.address as string,
    '-callbacks-client-interval',
    '100ms',
  ]);
  await waitFor(
    'two posted callbacks',
    () => client.logs.filter((l) => l.msg === 'posted callback').length >= 2,
  );
  for (const line of client.logs.filter((l) => l.msg === 'posted callback')) assert.equal(line.status, 200);
  client.child.kill('SIGTERM');
  assert.deepEqual(await client.waitForExit(5_000), { code: 0, signal: null });
});

test('when serve runs two workers, then one of them runs the callback service, and its replacement after it dies', async (t) => {
  const dsn = await createTestDatabase();
  const { url } = await startUpstream();
  const port = await freePort();
  const server = await startServer(t, [
    '-db-dsn',
    dsn,
    '-workers',
    '2',
    '-callbacks-addr',
    `127.0.0.1:${port}`,
    '-callbacks-upstream',
    url,
  ]);
  const started = () => server.logs.filter((l) => l.msg === 'callback service started');
  const serving = () => new Set(server.logs.filter((l) => l.msg === 'starting server').map((l) => l.pid));
  await waitFor('both workers to serve the API', () => serving().size === 2, 20_000);
  await waitFor('the callback service to start', () => started().length === 1, 20_000);
  assert.equal(started()[0]?.addr, `127.0.0.1:${port}`);
  const postTen = async (from: number) => {
    for (let i = from; i < from + 10; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/callback`, {
        method: 'POST',
        body: JSON.stringify({ object_ids: [i * 2] }),
        headers: { connection: 'close' },
      });
      assert.equal(res.status, 200);
    }
  };
  await postTen(0);
  await waitFor('the callbacks to be processed', async () => (await batches(dsn)).length === 0, 10_000);
  assert.equal(started().length, 1, 'the other worker runs no callback service');

  process.kill(started()[0]?.pid as number, 'SIGKILL');
  await waitFor('a replacement to start the callback service', () => started().length === 2, 20_000);
  assert.notEqual(started()[1]?.pid, started()[0]?.pid);
  await postTen(10);
  await waitFor('the callbacks to be processed', async () => (await batches(dsn)).length === 0, 10_000);
  server.child.kill('SIGTERM');
  assert.deepEqual(await server.waitForExit(20_000), { code: 0, signal: null });
});
