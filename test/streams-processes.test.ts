// Fan-out across processes: two `greenlight serve` processes on one database, each with its own
// event feed per topic. A change made through one reaches the SSE and WebSocket clients of the
// other; a graceful shutdown ends the streams it holds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPool } from '../src/platform/db.ts';
import { QUIET_MS } from '../src/platform/http-server.ts';
import { createTestDatabase, createUser } from './helpers.ts';
import { startServer } from './processes.ts';
import { startRedisServer } from './redis-server.ts';
import { openSse, openWs, type SseClient, until } from './stream-clients.ts';

test('when a movie is updated through instance A, then an SSE client and a WebSocket client of instance B get the event within a second; B ends them at shutdown', async (t) => {
  const dsn = await createTestDatabase();
  const [a, b] = await Promise.all([
    startServer(t, ['-db-dsn', dsn]),
    startServer(t, ['-db-dsn', dsn, '-events-heartbeat', '200ms']),
  ]);
  const db = createPool({ dsn, maxOpenConns: 2, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const created = await fetch(`http://127.0.0.1:${a.port}/v1/movies`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ title: 'Arrival', year: 2016, runtime: '116 mins', genres: ['drama'] }),
  });
  assert.equal(created.status, 201);
  const { movie } = (await created.json()) as { movie: { id: number } };

  const sse = await openSse(`http://127.0.0.1:${b.port}/v1/movies/events`, { token });
  t.after(() => sse.close());
  const ws = await openWs(`ws://127.0.0.1:${b.port}/v1/ws`, token);
  // One that has not sent its auth message yet: shutdown ends it the same way.
  const unauthenticated = await openWs(`ws://127.0.0.1:${b.port}/v1/ws`);
  const wsOpenedAt = Date.now();
  t.after(() => ws.socket.terminate());
  t.after(() => unauthenticated.socket.terminate());
  ws.send({ type: 'subscribe', topic: 'movies' });
  ws.send({ type: 'subscribe', topic: 'products' });
  const productSse = await openSse(`http://127.0.0.1:${b.port}/api/v1/products/events`, { token });
  t.after(() => productSse.close());
  await until(
    () => ws.messages.length >= 2 && sse.comments.length >= 1 && productSse.comments.length >= 1,
    'the clients to be connected',
  );

  const updatedAt = Date.now();
  const patched = await fetch(`http://127.0.0.1:${a.port}/v1/movies/${movie.id}`, {
    method: 'PATCH',
    headers: auth,
    body: JSON.stringify({ year: 2017 }),
  });
  assert.equal(patched.status, 200);
  const isUpdate = (data: unknown) => (data as { type?: string }).type === 'movie.updated';
  await until(
    () => sse.events.some((e) => isUpdate(JSON.parse(e.data ?? '{}'))) && ws.messages.some(isUpdate),
    'the update on B',
    1_000 - (Date.now() - updatedAt),
  );
  const fromSse = JSON.parse(sse.events.find((e) => e.event === 'movie.updated')?.data ?? '{}');
  const fromWs = ws.messages.find(isUpdate) as Record<string, unknown>;
  assert.deepEqual(fromSse.movie, {
    id: movie.id,
    title: 'Arrival',
    year: 2017,
    runtime: '116 mins',
    genres: ['drama'],
    version: 2,
  });
  assert.equal(fromWs.id, fromSse.id);
  assert.deepEqual(fromWs.movie, fromSse.movie);
  // A product change through A, on the same socket and on B's product stream.
  const productAt = Date.now();
  const product = await fetch(`http://127.0.0.1:${a.port}/api/v1/products`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ name: 'Keyboard', price: 149.99, stock: 4 }),
  });
  assert.equal(product.status, 201);
  const shown = await product.json();
  const isProduct = (data: unknown) => (data as { type?: string }).type === 'product.created';
  await until(
    () => productSse.events.some((e) => e.event === 'product.created') && ws.messages.some(isProduct),
    'the product on B',
    1_000 - (Date.now() - productAt),
  );
  assert.deepEqual(JSON.parse(productSse.events[0]?.data ?? '{}').product, shown);
  assert.deepEqual((ws.messages.find(isProduct) as Record<string, unknown>).product, shown);
  // Heartbeats every 200 ms on B.
  await until(() => sse.comments.filter((c) => c === 'heartbeat').length >= 2, 'heartbeats');
  // Each process reads the outboxes through one listener connection, whatever its topics and
  // clients.
  const { rows } = await db.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'greenlight-events-listener' AND datname = current_database()",
  );
  assert.equal(rows[0]?.count, 1);

  // A socket the drain finds quiet for QUIET_MS is cut; an upgraded one is not HTTP any more
  // and must be left to its WebSocket close, however long it has been open.
  await sleep(QUIET_MS + 100 - (Date.now() - wsOpenedAt));
  b.child.kill('SIGTERM');
  const exit = await b.waitForExit(10_000);
  assert.equal(exit.code, 0);
  await sse.ended;
  assert.equal((await ws.closed).code, 1001);
  assert.equal((await unauthenticated.closed).code, 1001);
  assert.ok(b.logs.some((l) => l.msg === 'stream ended' && l.reason === 'shutdown' && l.transport === 'sse'));
});

test("when -redis-url is set, then a change through A wakes B's feed through Redis within a second, and no process holds a LISTEN connection for events", async (t) => {
  const dsn = await createTestDatabase();
  const redis = await startRedisServer();
  // A safety poll of a minute: only the Redis wake-up can deliver within the second.
  const flags = ['-db-dsn', dsn, '-redis-url', redis.url, '-events-poll', '1m'];
  const [a, b] = await Promise.all([startServer(t, flags), startServer(t, flags)]);
  const db = createPool({ dsn, maxOpenConns: 2, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const sse = await openSse(`http://127.0.0.1:${b.port}/v1/movies/events`, { token });
  t.after(() => sse.close());
  const productSse = await openSse(`http://127.0.0.1:${b.port}/api/v1/products/events`, { token });
  t.after(() => productSse.close());
  await until(() => sse.comments.length >= 1 && productSse.comments.length >= 1, 'the streams to open');

  const createdAt = Date.now();
  const created = await fetch(`http://127.0.0.1:${a.port}/v1/movies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ title: 'Through Redis', year: 2020, runtime: '90 mins', genres: ['drama'] }),
  });
  assert.equal(created.status, 201);
  await until(() => sse.events.length >= 1, 'the event on B', 1_000 - (Date.now() - createdAt));
  assert.equal(JSON.parse(sse.events[0]?.data ?? '{}').movie.title, 'Through Redis');
  const productAt = Date.now();
  const product = await fetch(`http://127.0.0.1:${a.port}/api/v1/products`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ name: 'Through Redis', price: 1, stock: 1 }),
  });
  assert.equal(product.status, 201);
  await until(() => productSse.events.length >= 1, 'the product on B', 1_000 - (Date.now() - productAt));
  assert.equal(JSON.parse(productSse.events[0]?.data ?? '{}').product.name, 'Through Redis');
  const { rows } = await db.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'greenlight-events-listener' AND datname = current_database()",
  );
  assert.equal(rows[0]?.count, 0);
});

test('when serve runs -workers 2, then each worker has its own feed and every client gets every event, whichever worker holds it', async (t) => {
  const dsn = await createTestDatabase();
  const server = await startServer(t, ['-db-dsn', dsn, '-workers', '2']);
  const db = createPool({ dsn, maxOpenConns: 2, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const listenerCount = async () =>
    (
      await db.query<{ count: number }>(
        "SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'greenlight-events-listener' AND datname = current_database()",
      )
    ).rows[0]?.count;
  // Connections are spread over the workers by the kernel: open clients until both workers
  // hold some (each worker's feed starts with its first stream).
  const clients: SseClient[] = [];
  for (let i = 0; i < 40 && (await listenerCount()) !== 2; i++) {
    const sse = await openSse(`http://127.0.0.1:${server.port}/v1/movies/events`, { token });
    t.after(() => sse.close());
    clients.push(sse);
    await until(() => sse.comments.length >= 1, 'the stream to open');
  }
  assert.equal(await listenerCount(), 2);
  const created = await fetch(`http://127.0.0.1:${server.port}/v1/movies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ title: 'To every worker', year: 2020, runtime: '90 mins', genres: ['drama'] }),
  });
  assert.equal(created.status, 201);
  await until(() => clients.every((c) => c.events.length >= 1), 'every client to get the event');
  for (const client of clients)
    assert.equal(JSON.parse(client.events[0]?.data ?? '{}').movie.title, 'To every worker');
});
