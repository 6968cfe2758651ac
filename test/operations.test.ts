import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { HOST_ONLY } from '../src/operations/operations.routes.ts';
import { isProfiling } from '../src/operations/profiling.ts';
import { buildTestApp, createUser, withToken } from './helpers.ts';

const t = await buildTestApp({ flags: ['-stats-timeout', '400ms'] });
const admin = await createUser(t.db, {});
await t.db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.id]);
const asAdmin = withToken(t.app, admin.token);

test('when an admin asks for the stats, then every source answers with its counts', async () => {
  await t.api({
    method: 'POST',
    url: '/v1/movies',
    payload: { title: 'Counted', year: 2001, runtime: '90 mins', genres: ['x'] },
  });
  await t.db.query(`INSERT INTO products (user_id, name, price, stock) VALUES ($1, 'P', 1, 7)`, [admin.id]);
  const res = await asAdmin('/v1/stats');
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.partial, false);
  assert.equal(body.sources.movies.total, 1);
  assert.equal(body.sources.movies.added_last_day, 1);
  assert.equal(body.sources.users.total, 2);
  assert.equal(body.sources.users.admins, 1);
  assert.equal(body.sources.tokens.live_sessions, 2);
  assert.deepEqual(body.sources.products, { total: 1, stock: 7, created_last_day: 1, updated_last_day: 1 });
  assert.deepEqual(body.sources.callbacks, { pending: 0, oldest_pending_seconds: 0, objects: 0 });
});

test('when one source is held up past the deadline, then the others answer and it is marked timed out, its query cancelled', async () => {
  const locker = new pg.Client({ connectionString: t.dsn });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE products IN ACCESS EXCLUSIVE MODE');
    const res = await asAdmin('/v1/stats');
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.partial, true);
    assert.deepEqual(body.sources.products, { error: 'timed out' });
    assert.equal(body.sources.movies.total >= 1, true);
    assert.equal(typeof body.sources.callbacks.pending, 'number');
    // PostgreSQL cancels the waiting query itself (statement_timeout), lock or not.
    const deadline = Date.now() + 5_000;
    for (;;) {
      const { rows } = await locker.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
      );
      if (rows[0]?.n === 0) break;
      assert.ok(Date.now() < deadline, 'the stats query still waits for the lock');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await locker.query('ROLLBACK');
    await locker.end();
  }
  const again = await asAdmin('/v1/stats');
  assert.equal(again.json().partial, false);
  assert.equal(t.lines.filter((l) => l.level === 'error').length, 0);
});

test('when someone not an admin asks for stats or a profile, then 403', async () => {
  for (const [method, url] of [
    ['GET', '/v1/stats'],
    ['POST', '/v1/admin/profile?seconds=1'],
    ['POST', '/v1/admin/heap-snapshot'],
  ] as const) {
    assert.equal((await t.api({ method, url })).statusCode, 403, url);
  }
});

test('when a CPU profile is being taken, then a second profile or a heap snapshot is 409, and both work after', async () => {
  const profiling = asAdmin({ method: 'POST', url: '/v1/admin/profile?seconds=1' });
  const deadline = Date.now() + 5_000;
  while (!isProfiling()) {
    assert.ok(Date.now() < deadline, 'the profile never started');
    await new Promise((r) => setTimeout(r, 5));
  }
  const busy = await asAdmin({ method: 'POST', url: '/v1/admin/heap-snapshot' });
  assert.equal(busy.statusCode, 409);
  assert.deepEqual(busy.json(), {
    error: 'a profile or heap snapshot is already being taken by this process',
  });
  assert.equal((await asAdmin({ method: 'POST', url: '/v1/admin/profile?seconds=1' })).statusCode, 409);
  const res = await profiling;
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-disposition'] as string, /^attachment; filename="\d+\.cpuprofile"$/);
  const profile = res.json();
  assert.ok(Array.isArray(profile.nodes) && profile.nodes.length > 0);
  assert.ok(profile.endTime - profile.startTime >= 900_000, 'sampled about a second (µs)');

  const snapshot = await asAdmin({ method: 'POST', url: '/v1/admin/heap-snapshot' });
  assert.equal(snapshot.statusCode, 200);
  assert.match(snapshot.headers['content-disposition'] as string, /\.heapsnapshot"$/);
  const heap = snapshot.json();
  assert.ok(heap.snapshot.node_count > 1000);
  assert.equal((await asAdmin({ method: 'POST', url: '/v1/admin/profile?seconds=1' })).statusCode, 200);
});

test('when an admin asks for a heap snapshot from another address, then 403: it holds every secret of the process', async () => {
  for (const remoteAddress of ['203.0.113.7', '10.0.0.2', '::ffff:192.0.2.1']) {
    const res = await asAdmin({ method: 'POST', url: '/v1/admin/heap-snapshot', remoteAddress });
    assert.equal(res.statusCode, 403, remoteAddress);
    assert.deepEqual(res.json(), { error: HOST_ONLY });
  }
  // A CPU profile holds no values: an admin may take one from anywhere.
  const profile = await asAdmin({
    method: 'POST',
    url: '/v1/admin/profile?seconds=1',
    remoteAddress: '203.0.113.7',
  });
  assert.equal(profile.statusCode, 200);
});

test('when seconds is outside 1-60 or not a number, then 422', async () => {
  for (const seconds of ['0', '61', 'abc', '1.5']) {
    const res = await asAdmin({ method: 'POST', url: `/v1/admin/profile?seconds=${seconds}` });
    assert.equal(res.statusCode, 422, seconds);
    assert.deepEqual(res.json(), { error: { seconds: 'must be an integer between 1 and 60' } });
  }
});

test('when the service runs in production, then the profiling endpoints do not exist unless -profiling-enabled', async () => {
  const off = await buildTestApp({ dsn: t.dsn, flags: ['-env', 'production'] });
  const offAdmin = withToken(off.app, admin.token);
  assert.equal((await offAdmin({ method: 'POST', url: '/v1/admin/heap-snapshot' })).statusCode, 404);
  assert.equal((await offAdmin({ method: 'POST', url: '/v1/admin/profile?seconds=1' })).statusCode, 404);
  const on = await buildTestApp({ dsn: t.dsn, flags: ['-env', 'production', '-profiling-enabled'] });
  const onAdmin = withToken(on.app, admin.token);
  assert.equal((await onAdmin({ method: 'POST', url: '/v1/admin/profile?seconds=1' })).statusCode, 200);
});
