// Order change streams against a listening app whose order workflow runs against the payment
// stand-in, with real SSE (fetch) and WebSocket (ws) clients: each order's transitions in
// order, as GET /api/v1/orders/{id} shows it; only to its owner and admins, per event, on
// both transports; resume across other users' events; the orders:read scope; an admin made a
// user mid-stream; pruning.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setRole } from '../src/accounts/accounts.ts';
import { pruneEvents } from '../src/realtime/events.ts';
import { ORDERS } from '../src/realtime/topics.ts';
import { createUser, TEST_PASSWORD, untilPrunable, waitFor } from './helpers.ts';
import { allOrdersEnded, buildWorkflowTestApp, ORDER_FLOW } from './order-helpers.ts';
import { openSse, openWs, type SseEvent, until } from './stream-clients.ts';

const { app, db } = await buildWorkflowTestApp({ identityCache: true });
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as { port: number };
const base = `http://127.0.0.1:${port}`;
const EVENTS = `${base}/api/v1/orders/events`;
const WS = `ws://127.0.0.1:${port}/v1/ws`;

type OrderJson = { id: number; user_id: number; status: string; version: number };
type EventData = { id: number; type: string; occurred_at: string; order: OrderJson };

const seller = await createUser(db);
const alice = await createUser(db);
const bob = await createUser(db);
const boss = await createUser(db);
await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [boss.id]);

async function call(method: string, path: string, credential: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

const product = (
  await call('POST', '/api/v1/products', seller.token, { name: 'Lamp', price: 12.5, stock: 1000 })
).body as { id: number };

async function place(token: string, quantity = 1): Promise<OrderJson> {
  const res = await call('POST', '/api/v1/orders', token, {
    items: [{ product_id: product.id, quantity }],
    payment_token: 'tok_visa',
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.order;
}

const dataOf = (event: SseEvent | Record<string, unknown> | undefined): EventData =>
  ('data' in (event ?? {}) ? JSON.parse((event as SseEvent).data ?? 'null') : event) as EventData;
// The orders of the change events among them (not a socket's subscribed, gap or error).
const ordersOf = (events: readonly (SseEvent | Record<string, unknown>)[]) =>
  events.map((event) => dataOf(event).order).filter((order) => order !== undefined);
const statusesOf = (events: readonly (SseEvent | Record<string, unknown>)[], id: number) =>
  ordersOf(events)
    .filter((order) => order.id === id)
    .map((order) => order.status);
const FLOW = ORDER_FLOW;
const allEnded = () => allOrdersEnded(db);

const lastId = async () =>
  Number((await db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM order_events')).rows[0]?.id);

test("when orders of two users go through the workflow, then each owner's SSE and WebSocket streams get only their own order's transitions in order, as GET /api/v1/orders/{id} shows it, and an admin's get both", async (t) => {
  const streams = {
    alice: await openSse(EVENTS, { token: alice.token }),
    bob: await openSse(EVENTS, { token: bob.token }),
    boss: await openSse(EVENTS, { token: boss.token }),
  };
  t.after(() => {
    for (const stream of Object.values(streams)) stream.close();
  });
  for (const stream of Object.values(streams)) assert.equal(stream.status, 200);
  const sockets = { alice: await openWs(WS, alice.token), boss: await openWs(WS, boss.token) };
  t.after(() => {
    for (const socket of Object.values(sockets)) socket.socket.close();
  });
  for (const socket of Object.values(sockets)) socket.send({ type: 'subscribe', topic: 'orders' });
  await until(() => Object.values(sockets).every((s) => s.messages.length >= 1), 'subscribed');
  assert.deepEqual(sockets.alice.messages[0], { type: 'subscribed', topic: 'orders' });

  const mine = await place(alice.token);
  const theirs = await place(bob.token, 2);
  await until(
    () =>
      streams.boss.events.length >= 8 &&
      streams.alice.events.length >= 4 &&
      streams.bob.events.length >= 4 &&
      sockets.alice.messages.length >= 5 &&
      sockets.boss.messages.length >= 9,
    'every transition',
    20_000,
  );

  assert.deepEqual(statusesOf(streams.alice.events, mine.id), FLOW);
  assert.deepEqual(statusesOf(streams.bob.events, theirs.id), FLOW);
  assert.deepEqual(statusesOf(streams.boss.events, mine.id), FLOW);
  assert.deepEqual(statusesOf(streams.boss.events, theirs.id), FLOW);
  // Nothing of the other's order, not even its event ids.
  assert.deepEqual(new Set(ordersOf(streams.alice.events).map((o) => o.user_id)), new Set([alice.id]));
  assert.deepEqual(new Set(ordersOf(streams.bob.events).map((o) => o.user_id)), new Set([bob.id]));
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM order_events WHERE order_id = $1 ORDER BY id',
    [theirs.id],
  );
  const aliceIds = streams.alice.events.map((e) => e.id);
  for (const row of rows) assert.equal(aliceIds.includes(String(row.id)), false);

  const socketEvents = sockets.alice.messages.slice(1);
  assert.deepEqual(statusesOf(socketEvents, mine.id), FLOW);
  assert.equal(socketEvents.length, 4);
  for (const [i, event] of streams.alice.events.entries()) {
    const { topic, ...data } = socketEvents[i] as Record<string, unknown>;
    assert.equal(topic, 'orders');
    assert.deepEqual(dataOf(event), data);
  }
  assert.deepEqual(statusesOf(sockets.boss.messages.slice(1), theirs.id), FLOW);

  assert.deepEqual(dataOf(streams.alice.events[0]).order, mine);
  const shown = await call('GET', `/api/v1/orders/${mine.id}`, alice.token);
  assert.deepEqual(dataOf(streams.alice.events[3]).order, shown.body.order);
  assert.deepEqual(
    streams.alice.events.map((e) => e.event),
    ['order.created', 'order.updated', 'order.updated', 'order.updated'],
  );
});

test('when an owner resumes after one of its events, then it gets exactly its own later events, skipping the other users events between; the WebSocket too', async (t) => {
  const before = await lastId();
  const first = await place(alice.token);
  const other = await place(bob.token);
  const second = await place(alice.token);
  // The workflows end first, so the outbox holds every transition of all three.
  await waitFor(
    'the three orders to be confirmed',
    async () => {
      const { rows } = await db.query<{ n: string }>(
        "SELECT count(*) AS n FROM orders WHERE id = ANY($1) AND status = 'confirmed'",
        [[first.id, other.id, second.id]],
      );
      return Number(rows[0]?.n) === 3;
    },
    20_000,
  );
  const { rows } = await db.query<{ id: string; order_id: string }>(
    'SELECT id, order_id FROM order_events WHERE id > $1 ORDER BY xid, id',
    [before],
  );
  const firstOwnEvent = Number(rows.find((r) => Number(r.order_id) === first.id)?.id);

  const resumed = await openSse(EVENTS, {
    token: alice.token,
    headers: { 'last-event-id': String(firstOwnEvent) },
  });
  t.after(() => resumed.close());
  const ws = await openWs(WS, alice.token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'orders', last_event_id: firstOwnEvent });
  const expected = rows
    .filter((r) => Number(r.id) !== firstOwnEvent && Number(r.order_id) !== other.id)
    .map((r) => String(r.id));
  assert.equal(expected.length, 7);
  await until(() => resumed.events.length >= 7 && ws.messages.length >= 8, 'the missed events');
  assert.deepEqual(
    resumed.events.map((e) => e.id),
    expected,
  );
  assert.deepEqual(
    ws.messages.slice(1).map((m) => String(m.id)),
    expected,
  );
  assert.deepEqual(statusesOf(resumed.events, first.id), FLOW.slice(1));
  assert.deepEqual(statusesOf(resumed.events, second.id), FLOW);
  assert.deepEqual(statusesOf(resumed.events, other.id), []);

  // Resuming from an id of someone else's event (one a client may guess) reveals nothing more.
  const otherEvent = rows.find((r) => Number(r.order_id) === other.id)?.id;
  const guessed = await openSse(EVENTS, {
    token: alice.token,
    headers: { 'last-event-id': String(otherEvent) },
  });
  t.after(() => guessed.close());
  const third = await place(alice.token);
  await until(() => statusesOf(guessed.events, third.id).length >= 4, 'the new order', 20_000);
  assert.deepEqual(new Set(ordersOf(guessed.events).map((o) => o.user_id)), new Set([alice.id]));

  const pruned = await lastId();
  await untilPrunable(db, ORDERS, pruned);
  assert.ok((await pruneEvents(db, ORDERS, new Date(Date.now() + 60_000))) >= 10);
  const gapped = await openSse(EVENTS, { token: alice.token, headers: { 'last-event-id': String(before) } });
  t.after(() => gapped.close());
  await until(() => gapped.events.length >= 1, 'the gap');
  assert.deepEqual(gapped.events[0], {
    event: 'gap',
    data: JSON.stringify({ last_event_id: before, pruned_up_to: pruned }),
  });
});

test('when an API key lacks orders:read, then the order stream answers 403 in the API envelope and a WebSocket subscribe gets an error; with orders:read it streams its user orders only', async (t) => {
  const login = await call('POST', '/api/v1/auth/login', '', { email: alice.email, password: TEST_PASSWORD });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const jwt = login.body.access_token as string;
  const keyOf = async (scopes: string[]) => {
    const created = await call('POST', '/api/v1/api-keys', jwt, { name: 'orders stream', scopes });
    assert.equal(created.status, 201);
    return created.body.key as string;
  };
  const writeOnly = await keyOf(['orders:write']);
  const refused = await fetch(EVENTS, { headers: { 'x-api-key': writeOnly } });
  assert.equal(refused.status, 403);
  assert.deepEqual(await refused.json(), {
    code: 403,
    message: 'you do not have permission to perform this action',
  });
  const anonymous = await fetch(EVENTS);
  assert.equal(anonymous.status, 401);
  assert.deepEqual(await anonymous.json(), { code: 401, message: 'authorization header is required' });
  const ws = await openWs(WS, writeOnly);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'orders' });
  await until(() => ws.messages.length >= 1, 'the refusal');
  assert.deepEqual(ws.messages, [{ type: 'error', topic: 'orders', message: 'permission missing' }]);

  const reader = await openSse(EVENTS, { headers: { 'x-api-key': await keyOf(['orders:read']) } });
  t.after(() => reader.close());
  assert.equal(reader.status, 200);
  const theirs = await place(bob.token);
  const mine = await place(alice.token);
  await until(() => statusesOf(reader.events, mine.id).length >= 4, 'the own order', 20_000);
  await allEnded();
  assert.deepEqual(statusesOf(reader.events, theirs.id), []);
});

test('when an admin is made a user while streaming, then its streams stop receiving other users order events', async (t) => {
  const chief = await createUser(db);
  await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [chief.id]);
  const sse = await openSse(EVENTS, { token: chief.token });
  t.after(() => sse.close());
  const ws = await openWs(WS, chief.token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'orders' });
  await until(() => ws.messages.length >= 1, 'subscribed');
  const seen = await place(bob.token);
  await until(
    () => statusesOf(sse.events, seen.id).length >= 4 && statusesOf(ws.messages, seen.id).length >= 4,
    "another user's order while admin",
    20_000,
  );

  await setRole(db, chief.email, 'user');
  // The identity invalidation reaches the stream owners at once; give it the re-check's
  // half second before the next order, whose events must not arrive.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const unseen = await place(bob.token);
  const own = await place(chief.token);
  await until(
    () => statusesOf(sse.events, own.id).length >= 4 && statusesOf(ws.messages, own.id).length >= 4,
    'its own order after',
    20_000,
  );
  await allEnded();
  assert.deepEqual(statusesOf(sse.events, unseen.id), []);
  assert.deepEqual(statusesOf(ws.messages, unseen.id), []);
});
