// Product change streams against a listening app on its own database, with real SSE (fetch)
// and WebSocket (ws) clients: the events of each change in commit order, exactly as
// GET /api/v1/products/:id shows the product; resume and gaps; rollbacks; the products API's
// envelope and scopes; several topics on one socket; revocation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as products from '../src/products/products.sql.ts';
import { pruneEvents } from '../src/realtime/events.ts';
import { PRODUCTS } from '../src/realtime/topics.ts';
import { buildTestApp, createMovie, createUser, TEST_PASSWORD, untilPrunable, waitFor } from './helpers.ts';
import { openSse, openWs, type SseEvent, until } from './stream-clients.ts';

const { app, api, db, token } = await buildTestApp({ identityCache: true });
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as { port: number };
const base = `http://127.0.0.1:${port}`;
const EVENTS = `${base}/api/v1/products/events`;
const WS = `ws://127.0.0.1:${port}/v1/ws`;

type ProductJson = {
  id: number;
  user_id: number;
  name: string;
  price: number;
  stock: number;
  description?: string;
};

async function call(method: string, path: string, credential: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function createProduct(fields: Record<string, unknown> = {}): Promise<ProductJson> {
  const res = await call('POST', '/api/v1/products', token, {
    name: 'Keyboard',
    price: 149.99,
    stock: 4,
    ...fields,
  });
  assert.equal(res.status, 201);
  return res.body as ProductJson;
}

// A seed-002 user logged in (JWT) with an API key of the given scopes.
async function apiKey(scopes: string[]): Promise<{ id: number; key: string; jwt: string }> {
  const user = await createUser(db);
  const login = await call('POST', '/api/v1/auth/login', '', { email: user.email, password: TEST_PASSWORD });
  const jwt = (login.body as { access_token: string }).access_token;
  const created = await call('POST', '/api/v1/api-keys', jwt, { name: 'stream', scopes });
  assert.equal(created.status, 201);
  const { id, key } = created.body as { id: number; key: string };
  return { id, key, jwt };
}

const dataOf = (event: SseEvent | Record<string, unknown> | undefined) =>
  ('data' in (event ?? {}) ? JSON.parse((event as SseEvent).data ?? 'null') : event) as {
    id: number;
    type: string;
    occurred_at: string;
    product: Record<string, unknown>;
  };

const lastId = async () =>
  Number(
    (await db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM product_events')).rows[0]?.id,
  );

test('when a product is created, updated and deleted, then SSE and WebSocket clients get the three events in commit order, each product as GET /api/v1/products/:id shows it', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  assert.equal(sse.status, 200);
  assert.match(sse.headers.get('content-type') ?? '', /^text\/event-stream/);
  const ws = await openWs(WS, token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'products' });
  await until(() => ws.messages.length >= 1, 'subscribed');
  assert.deepEqual(ws.messages[0], { type: 'subscribed', topic: 'products' });

  const created = await createProduct({ description: 'TKL' });
  const updated = await call('PATCH', `/api/v1/products/${created.id}`, token, {
    price: 99.9,
    description: '',
  });
  assert.equal(updated.status, 200);
  const shown = await call('GET', `/api/v1/products/${created.id}`, token);
  assert.equal((await call('DELETE', `/api/v1/products/${created.id}`, token)).status, 204);
  await until(() => sse.events.length >= 3 && ws.messages.length >= 4, 'three events on each');

  const { rows } = await db.query<{ id: string; type: string }>(
    'SELECT id, type FROM product_events WHERE product_id = $1 ORDER BY id',
    [created.id],
  );
  assert.deepEqual(
    rows.map((r) => r.type),
    ['product.created', 'product.updated', 'product.deleted'],
  );
  assert.deepEqual(
    sse.events.map((e) => [e.id, e.event]),
    rows.map((r) => [String(r.id), r.type]),
  );
  const socketEvents = ws.messages.slice(1);
  assert.deepEqual(
    socketEvents.map((m) => [m.topic, m.id, m.type]),
    rows.map((r) => ['products', Number(r.id), r.type]),
  );
  for (const [i, event] of sse.events.entries()) {
    const { topic, ...data } = socketEvents[i] as Record<string, unknown>;
    assert.deepEqual(dataOf(event), data);
  }
  assert.deepEqual(dataOf(sse.events[0]).product, created);
  assert.deepEqual(dataOf(sse.events[1]).product, updated.body);
  assert.deepEqual(dataOf(sse.events[1]).product, shown.body);
  assert.equal('description' in dataOf(sse.events[1]).product, false);
  assert.deepEqual(dataOf(sse.events[2]).product, { id: created.id });
});

test('when one socket subscribes to movies and products, then it gets the events of both, each with its topic; unsubscribing one keeps the other', async (t) => {
  const ws = await openWs(WS, token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'movies' });
  ws.send({ type: 'subscribe', topic: 'products' });
  await until(() => ws.messages.length >= 2, 'both subscribed');
  assert.deepEqual(new Set(ws.messages.map((m) => m.topic)), new Set(['movies', 'products']));
  const movie = await createMovie(api, { title: 'Beside the products' });
  const product = await createProduct({ name: 'Beside the movies' });
  await until(() => ws.messages.length >= 4, 'both events');
  const events = ws.messages.slice(2);
  assert.deepEqual(events.find((m) => m.topic === 'movies')?.movie, { ...movie, version: 1 });
  assert.deepEqual(events.find((m) => m.topic === 'products')?.product, product);

  ws.send({ type: 'unsubscribe', topic: 'movies' });
  await until(() => ws.messages.length >= 5, 'unsubscribed');
  assert.deepEqual(ws.messages[4], { type: 'unsubscribed', topic: 'movies' });
  await createMovie(api, { title: 'Unseen' });
  const seen = await createProduct({ name: 'Still seen' });
  await until(
    () => ws.messages.some((m) => (m.product as ProductJson | undefined)?.id === seen.id),
    'the product',
  );
  assert.deepEqual(
    ws.messages.slice(5).map((m) => m.topic),
    ['products'],
  );
});

test('when a client resumes with Last-Event-ID or last_event_id, then it gets exactly the product events after it; a pruned past is announced as a gap', async (t) => {
  const before = await lastId();
  const a = await createProduct({ name: 'Missed one' });
  const b = await createProduct({ name: 'Missed two' });
  const resumed = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => resumed.close());
  const ws = await openWs(WS, token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'products', last_event_id: before + 1 });
  await until(() => resumed.events.length >= 2 && ws.messages.length >= 2, 'the missed events');
  const c = await createProduct({ name: 'Live' });
  await until(() => resumed.events.length >= 3 && ws.messages.length >= 3, 'the live event');
  assert.deepEqual(
    resumed.events.map((e) => dataOf(e).product.id),
    [a.id, b.id, c.id],
  );
  assert.deepEqual(
    ws.messages.map((m) => (m.type === 'subscribed' ? 'subscribed' : dataOf(m).product.id)),
    ['subscribed', b.id, c.id],
  );

  const stored = await lastId();
  await untilPrunable(db, PRODUCTS, stored);
  assert.ok((await pruneEvents(db, PRODUCTS, new Date(Date.now() + 60_000))) >= 3);
  const left = await createProduct({ name: 'After the prune' });
  const gapped = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => gapped.close());
  await until(() => gapped.events.length >= 2, 'the gap and what is left');
  assert.deepEqual(gapped.events[0], {
    event: 'gap',
    data: JSON.stringify({ last_event_id: before, pruned_up_to: stored }),
  });
  assert.equal(dataOf(gapped.events[1]).product.id, left.id);
  const socket = await openWs(WS, token);
  t.after(() => socket.socket.close());
  socket.send({ type: 'subscribe', topic: 'products', last_event_id: before });
  await until(() => socket.messages.length >= 3, 'the gap and what is left on the socket');
  assert.deepEqual(socket.messages.slice(0, 2), [
    { type: 'subscribed', topic: 'products' },
    { type: 'gap', topic: 'products', last_event_id: before, pruned_up_to: stored },
  ]);
  assert.equal(dataOf(socket.messages[2]).product.id, left.id);
});

test('when a product change is rolled back, then no client gets an event for it', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  await until(() => sse.comments.length >= 1, 'the stream to open');
  const { rows } = await db.query<{ id: number }>('SELECT id FROM users ORDER BY id LIMIT 1');
  const userId = (rows[0] as { id: number }).id;
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const doomed = await products.insertProduct(client, userId, {
      name: 'Never was',
      description: '',
      price: '1.00',
      stock: 1,
    });
    await client.query('ROLLBACK');
    assert.equal(
      (await db.query('SELECT 1 FROM product_events WHERE product_id = $1', [doomed.id])).rowCount,
      0,
    );
  } finally {
    client.release();
  }
  const kept = await createProduct({ name: 'Committed' });
  await until(() => sse.events.length >= 1, 'the committed event');
  assert.deepEqual(
    sse.events.map((e) => dataOf(e).product.name),
    ['Committed'],
  );
  assert.equal(dataOf(sse.events[0]).product.id, kept.id);
});

test('when a client has no products:read scope, no valid credential or a malformed Last-Event-ID, then SSE answers in the products envelope and a WebSocket subscribe gets an error', async (t) => {
  const writeOnly = await apiKey(['products:write']);
  const res = await fetch(EVENTS, { headers: { 'x-api-key': writeOnly.key } });
  assert.equal(res.status, 403);
  assert.deepEqual(await res.json(), {
    code: 403,
    message: 'you do not have permission to perform this action',
  });
  const anonymous = await fetch(EVENTS);
  assert.equal(anonymous.status, 401);
  assert.deepEqual(await anonymous.json(), { code: 401, message: 'authorization header is required' });
  for (const [headers, query] of [
    [{ 'last-event-id': 'abc' }, ''],
    [{}, '?last_event_id=-1'],
  ] as const) {
    const bad = await fetch(`${EVENTS}${query}`, {
      headers: { authorization: `Bearer ${token}`, ...headers },
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: number }).code, 400);
  }

  const ws = await openWs(WS, writeOnly.key);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'products' });
  await until(() => ws.messages.length >= 1, 'the refusal');
  assert.deepEqual(ws.messages, [{ type: 'error', topic: 'products', message: 'permission missing' }]);
  const unseen = await createProduct({ name: 'Not for write-only keys' });
  ws.send({ type: 'subscribe', topic: 'albums' });
  await until(() => ws.messages.length >= 2, 'the socket to answer again');
  assert.equal(
    (ws.messages as Record<string, unknown>[]).some(
      (m) => (m.product as ProductJson | undefined)?.id === unseen.id,
    ),
    false,
  );
});

test('when the API key behind a product stream is deleted, then its SSE and WebSocket streams end within a second', async (t) => {
  const reader = await apiKey(['products:read']);
  const sse = await openSse(EVENTS, { token: reader.key });
  t.after(() => sse.close());
  assert.equal(sse.status, 200);
  const ws = await openWs(WS, reader.key);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'products' });
  await until(() => ws.messages.length >= 1, 'subscribed');
  let sseEndedAt = 0;
  let wsEndedAt = 0;
  void sse.ended.then(() => {
    sseEndedAt = Date.now();
  });
  const closed = ws.closed.then((close) => {
    wsEndedAt = Date.now();
    return close;
  });
  const revokedAt = Date.now();
  assert.equal((await call('DELETE', `/api/v1/api-keys/${reader.id}`, reader.jwt)).status, 204);
  await until(() => sseEndedAt > 0 && wsEndedAt > 0, 'both streams to end', 1_000);
  assert.ok(sseEndedAt - revokedAt <= 1_000 && wsEndedAt - revokedAt <= 1_000);
  assert.equal(sse.events.at(-1)?.event, 'revoked');
  assert.equal((await closed).code, 1008);
});

test('when two transactions change one product, then the second waits for the first before it takes its transaction id, so its event comes after; writers of other products and of movies go on', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  await until(() => sse.comments.length >= 1, 'the stream to open');
  const product = await createProduct({ name: 'Contended' });
  await until(() => sse.events.length >= 1, 'the created event');
  const holder = await db.connect();
  t.after(async () => {
    await holder.query('ROLLBACK');
    holder.release();
  });
  const admin = { userId: product.user_id, admin: true };
  await holder.query('BEGIN');
  await products.updateProduct(holder, String(product.id), admin, { name: 'First' });
  const waiter = await db.connect();
  t.after(() => waiter.release());
  const waiterPid = (await waiter.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  const waiting = products.updateProduct(waiter, String(product.id), admin, { name: 'Second' });
  // It waits on this product's lock without a transaction id yet: the id it gets once the
  // first commits is larger than the first's.
  await waitFor('the second writer to wait', async () => {
    const { rows } = await db.query<{ waiting: boolean; xid: string | null }>(
      "SELECT wait_event_type = 'Lock' AS waiting, backend_xid::text AS xid FROM pg_stat_activity WHERE pid = $1",
      [waiterPid],
    );
    return rows[0]?.waiting === true && rows[0];
  });
  const { rows } = await db.query<{ xid: string | null }>(
    'SELECT backend_xid::text AS xid FROM pg_stat_activity WHERE pid = $1',
    [waiterPid],
  );
  assert.equal(rows[0]?.xid, null);
  // Changes of other records are not held up.
  const other = await createProduct({ name: 'Not waiting' });
  await createMovie(api, { title: 'Not waiting' });
  await holder.query('COMMIT');
  await waiting;
  await until(() => sse.events.length >= 4, 'every product event');
  assert.deepEqual(
    sse.events.slice(1).map((e) => [dataOf(e).product.id, dataOf(e).product.name]),
    [
      [product.id, 'First'],
      [other.id, 'Not waiting'],
      [product.id, 'Second'],
    ],
  );
});
