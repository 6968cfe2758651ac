// orders.place through the broker against a real rabbitmq-server (one for the file), with the
// orders' workflow running against the payment stand-in: a command places one order however
// often it is delivered (its message id is the order's idempotency key), a redelivery while
// the first is still in its transaction is put back, what POST /api/v1/orders refuses is
// dead-lettered with the route's message, and the placed order's events reach the exchange.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tryLockKey } from '../src/orders/idempotency-keys.sql.ts';
import { withTransaction } from '../src/platform/db.ts';
import { collect, commandHandlerOf, connect, deadLetters, sendCommands } from './broker-clients.ts';
import { captureLogger, createUser, waitFor, withToken } from './helpers.ts';
import { allOrdersEnded, buildWorkflowTestApp, createProduct, ORDER_FLOW } from './order-helpers.ts';
import { startRabbitmqServer } from './rabbitmq-server.ts';

const rabbit = await startRabbitmqServer();
const client = connect(rabbit.url);
const events = await collect(client, 'test-order-events');
const t = await buildWorkflowTestApp({ flags: ['-amqp-url', rabbit.url, '-amqp-relay-poll', '100ms'] });

const seller = await createUser(t.db);
const buyer = await createUser(t.db);

const metricsText = async () => (await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).body;

const product = async () => (await createProduct(withToken(t.app, seller.token))).id;

const orderBody = (productId: number, quantity = 2) =>
  JSON.stringify({ items: [{ product_id: productId, quantity }], payment_token: 'tok_visa' });

const ordersOf = async (userId: number) =>
  (
    await t.db.query<{ id: number; status: string }>(
      'SELECT id, status FROM orders WHERE user_id = $1 ORDER BY id',
      [userId],
    )
  ).rows;

const place = { type: 'orders.place', headers: { authorization: `Bearer ${buyer.token}` } };

test('when a good orders.place command is delivered twice, then one order is placed and confirmed, and its events reach the exchange', async () => {
  const productId = await product();
  const body = orderBody(productId);
  await sendCommands(client, [
    { ...place, messageId: 'order-once', body },
    { ...place, messageId: 'order-once', body },
  ]);
  await waitFor('both deliveries settled', async () =>
    /greenlight_broker_commands_total\{type="orders.place",outcome="duplicate"\} 1/.test(await metricsText()),
  );
  const [order, ...more] = await ordersOf(buyer.id);
  assert.ok(order);
  assert.deepEqual(more, []);
  const recorded = await t.db.query('SELECT type, user_id FROM broker_commands WHERE message_id = $1', [
    'order-once',
  ]);
  assert.deepEqual(recorded.rows, [{ type: 'orders.place', user_id: buyer.id }]);

  // The message id is the order's Idempotency-Key: the HTTP route answers the same order again.
  const replay = await t.app.inject({
    method: 'POST',
    url: '/api/v1/orders',
    headers: { authorization: `Bearer ${buyer.token}`, 'idempotency-key': 'order-once' },
    payload: body,
  });
  assert.equal(replay.statusCode, 202, replay.body);
  assert.equal(replay.headers['idempotent-replayed'], 'true');
  assert.equal(replay.json().order.id, order.id);

  // The workflow runs as for an order placed over HTTP, and every step's event is published.
  const ours = () =>
    events.messages.filter((m) => (m.body.order as { id?: number } | undefined)?.id === order.id);
  await waitFor('the confirmed order on the exchange', () =>
    ours().some((m) => (m.body.order as { status: string }).status === 'confirmed'),
  );
  assert.deepEqual(
    ours().map((m) => (m.body.order as { status: string }).status),
    ORDER_FLOW,
  );
  assert.deepEqual(
    ours().map((m) => m.routingKey),
    ['order.created', 'order.updated', 'order.updated', 'order.updated'],
  );
  const [created] = ours();
  assert.match(created?.messageId ?? '', /^orders-\d+$/);
  assert.equal(created?.headers['x-greenlight-subject'], `order-${order.id}`);
  assert.equal((await t.db.query('SELECT stock FROM products WHERE id = $1', [productId])).rows[0].stock, 8);
});

test('when orders.place commands are what POST /api/v1/orders refuses, then each is dead-lettered with the route message and no order is placed', async () => {
  const dead = await deadLetters(client);
  const productId = await product();
  const key = await t.app.inject({
    method: 'POST',
    url: '/api/v1/api-keys',
    headers: { authorization: `Bearer ${buyer.token}` },
    payload: { name: 'reader', scopes: ['orders:read'] },
  });
  assert.equal(key.statusCode, 201, key.body);
  const before = (await ordersOf(buyer.id)).length;
  await sendCommands(client, [
    { ...place, messageId: 'order-quantity', body: orderBody(productId, 0) },
    { ...place, messageId: 'order-unknown', body: orderBody(2_000_000_000) },
    { ...place, messageId: 'order-json', body: '{"items": [' },
    { ...place, messageId: 'order-shape', body: '{"items": [], "payment_token": 5}' },
    {
      ...place,
      messageId: 'order-scope',
      headers: { 'x-api-key': key.json().key },
      body: orderBody(productId),
    },
    { ...place, messageId: 'order with spaces', body: orderBody(productId) },
  ]);
  await waitFor('six dead letters', () => dead.letters.length >= 6, 30_000);
  await dead.close();
  const reasons = Object.fromEntries(dead.letters.map((l) => [l.messageId, String(l.reason)]));
  assert.deepEqual(reasons, {
    'order-quantity': 'validation: quantity must be between 1 and 1000',
    'order-unknown': 'validation: product 2000000000 does not exist',
    'order-json': 'body contains badly-formed JSON',
    'order-shape': 'payment_token must be a string',
    'order-scope': 'you do not have permission to perform this action',
    'order with spaces': 'message-id must be 1-255 visible ASCII characters: it is the idempotency key',
  });
  assert.equal((await ordersOf(buyer.id)).length, before);
  assert.match(
    await metricsText(),
    /greenlight_broker_commands_total\{type="orders.place",outcome="dead"\} 6/,
  );
});

test('when a redelivery arrives while the first is still in its transaction, then it is put back, and applied once the first is gone', async () => {
  const { logger, lines } = captureLogger();
  const handle = commandHandlerOf(t, logger);
  const command = {
    messageId: 'order-in-progress',
    type: 'orders.place',
    contentType: 'application/json',
    headers: { authorization: `Bearer ${buyer.token}` },
    body: Buffer.from(orderBody(await product())),
    redelivered: true,
    attempts: 0,
  };
  const before = (await ordersOf(buyer.id)).length;
  // The first delivery's transaction holds the key's lock, as placeOrder takes it.
  await withTransaction(t.db, async (tx) => {
    assert.equal(await tryLockKey(tx, buyer.id, 'order-in-progress'), true);
    assert.deepEqual(await handle(command), { kind: 'retry', attempt: 1, delayMs: 200 });
  });
  const retried = lines.find((line) => line.msg === 'command failed; retrying');
  assert.match(String((retried?.err as { message?: string })?.message), /key is still in progress/);
  assert.equal((await ordersOf(buyer.id)).length, before);
  assert.deepEqual(await handle(command), { kind: 'ack' });
  assert.equal((await ordersOf(buyer.id)).length, before + 1);
  await allOrdersEnded(t.db);
});
