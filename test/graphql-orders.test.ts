// Orders in GraphQL: the very use cases of /api/v1/orders, so the same answers, rules and
// messages over both transports, and one idempotency key space shared by them. No workflow
// workers run here: orders stay pending unless a test moves them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildTestApp, createUser, type Inject, TEST_PASSWORD, withToken } from './helpers.ts';
import { createProduct } from './order-helpers.ts';

const { app, db } = await buildTestApp();
const seller = await createUser(db);
const buyer = await createUser(db);
const other = await createUser(db);
const boss = await createUser(db);
await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [boss.id]);
const as = (token: string) => withToken(app, token);

type GqlError = { message: string; extensions: { code?: string; status?: number } };
type Result = { data?: Record<string, unknown> | null; errors?: GqlError[] };

async function gql(inject: Inject, query: string, variables?: Record<string, unknown>): Promise<Result> {
  const res = await inject({ method: 'POST', url: '/graphql', payload: { query, variables } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as Result;
}

const errorOf = (result: Result) => {
  const error = result.errors?.[0] ?? assert.fail(`no error in ${JSON.stringify(result)}`);
  return { status: error.extensions.status, code: error.extensions.code, message: error.message };
};

const product = await createProduct(as(seller.token), { stock: 100 });

const ORDER_FIELDS =
  'id userId status items { productId quantity unitPrice } total failureReason createdAt updatedAt version';
const PLACE = `mutation($key: String, $input: PlaceOrderInput!) {
  placeOrder(idempotencyKey: $key, input: $input) { replayed order { ${ORDER_FIELDS} } }
}`;
const input = (quantity = 2, productId = product.id) => ({
  items: [{ productId, quantity }],
  paymentToken: 'tok_visa',
});

type GqlOrder = { id: string; userId: string; status: string; total: number; version: number };

async function place(token: string, key?: string, quantity = 2) {
  const result = await gql(as(token), PLACE, { key, input: input(quantity) });
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data?.placeOrder as { replayed: boolean; order: GqlOrder };
}

// The REST order with GraphQL's names.
const asGraphql = (order: Record<string, unknown>) => ({
  id: String(order.id),
  userId: String(order.user_id),
  status: order.status,
  items: (order.items as Record<string, unknown>[]).map((item) => ({
    productId: item.product_id,
    quantity: item.quantity,
    unitPrice: item.unit_price,
  })),
  total: order.total,
  failureReason: order.failure_reason,
  createdAt: order.created_at,
  updatedAt: order.updated_at,
  version: order.version,
});

describe('orders in GraphQL', () => {
  test('when an order is placed, then order, orders and orderEvents answer what GET /api/v1/orders answers', async () => {
    const { order, replayed } = await place(buyer.token);
    assert.equal(replayed, false);
    assert.equal(order.status, 'pending');
    assert.equal(order.total, 25);
    const rest = await as(buyer.token)(`/api/v1/orders/${order.id}`);
    assert.equal(rest.statusCode, 200);
    assert.deepEqual(order, asGraphql(rest.json().order));

    const read = await gql(as(buyer.token), `query($id: ID!) { order(id: $id) { ${ORDER_FIELDS} } }`, {
      id: order.id,
    });
    assert.deepEqual(read.data?.order, order);
    const page = await gql(
      as(buyer.token),
      '{ orders(status: pending, limit: 50) { data { id } total page limit } }',
    );
    const restPage = (await as(buyer.token)('/api/v1/orders?status=pending&limit=50')).json();
    assert.deepEqual(page.data?.orders, {
      data: restPage.data.map((o: { id: number }) => ({ id: String(o.id) })),
      total: restPage.total,
      page: 1,
      limit: 50,
    });
    const events = await gql(
      as(buyer.token),
      `query($id: ID!) { orderEvents(id: $id) { status at detail } }`,
      {
        id: order.id,
      },
    );
    assert.deepEqual(
      events.data?.orderEvents,
      (await as(buyer.token)(`/api/v1/orders/${order.id}/events`)).json().events,
    );
  });

  test("when another user asks for an order, then it is NOT_FOUND with REST's message, read or cancelled; an admin reads and lists it", async () => {
    const { order } = await place(buyer.token);
    for (const query of [
      `query($id: ID!) { order(id: $id) { id } }`,
      `query($id: ID!) { orderEvents(id: $id) { status } }`,
      `mutation($id: ID!) { cancelOrder(id: $id) { id } }`,
    ]) {
      const refused = errorOf(await gql(as(other.token), query, { id: order.id }));
      const rest = await as(other.token)(`/api/v1/orders/${order.id}`);
      assert.deepEqual(refused, { status: 404, code: 'NOT_FOUND', message: rest.json().message });
    }
    const theirs = await gql(as(other.token), '{ orders { data { id } total } }');
    assert.deepEqual(theirs.data?.orders, { data: [], total: 0 });
    const read = await gql(as(boss.token), `query($id: ID!) { order(id: $id) { userId } }`, { id: order.id });
    assert.deepEqual(read.data?.order, { userId: String(buyer.id) });
    const all = await gql(as(boss.token), '{ orders(limit: 100) { data { id } } }');
    assert.ok(
      (all.data as { orders: { data: { id: string }[] } }).orders.data.some((o) => o.id === order.id),
    );
    const { rows } = await db.query('SELECT cancel_requested_at FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_requested_at, null);
  });

  test('when the same idempotency key is sent again, over GraphQL or REST, then the first answer comes back; with another input VALIDATION, as REST says', async () => {
    const key = `gql-${Date.now()}`;
    const first = await place(buyer.token, key);
    const again = await place(buyer.token, key);
    assert.deepEqual(again, { ...first, replayed: true });
    const rest = await as(buyer.token)({
      method: 'POST',
      url: '/api/v1/orders',
      headers: { 'idempotency-key': key },
      payload: { items: [{ product_id: product.id, quantity: 2 }], payment_token: 'tok_visa' },
    });
    assert.equal(rest.statusCode, 202);
    assert.equal(rest.headers['idempotent-replayed'], 'true');
    assert.deepEqual(asGraphql(rest.json().order), first.order);
    const reused = errorOf(await gql(as(buyer.token), PLACE, { key, input: input(3) }));
    assert.deepEqual(reused, {
      status: 422,
      code: 'VALIDATION',
      message: 'validation: idempotency key reused with a different request',
    });
    // Keys are per user: another user's same key places its own order.
    const theirs = await place(other.token, key);
    assert.equal(theirs.replayed, false);
    assert.notEqual(theirs.order.id, first.order.id);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM orders WHERE id = ANY($1)', [
      [first.order.id, theirs.order.id],
    ]);
    assert.equal(rows[0].n, 2);
  });

  test('when an order is invalid, then GraphQL answers the use case errors with REST messages', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [{ items: [], paymentToken: 'tok_visa' }, 422, 'validation: an order needs at least one item'],
      [input(0), 422, 'validation: quantity must be between 1 and 1000'],
      [input(1, 999_999), 422, 'validation: product 999999 does not exist'],
      [{ ...input(), paymentToken: ' ' }, 422, 'validation: payment_token is required'],
    ];
    for (const [given, status, message] of cases) {
      const result = errorOf(await gql(as(buyer.token), PLACE, { input: given }));
      assert.deepEqual([result.status, result.message], [status, message], JSON.stringify(given));
    }
    const badKey = errorOf(await gql(as(buyer.token), PLACE, { key: 'with space', input: input() }));
    assert.deepEqual(badKey, {
      status: 400,
      code: 'BAD_REQUEST',
      message: 'invalid Idempotency-Key header: it must be 1-255 visible ASCII characters',
    });
  });

  test('when an order is cancelled, then a pending one is marked and a terminal one is EDIT_CONFLICT with REST message', async () => {
    const { order } = await place(buyer.token);
    const cancelled = await gql(
      as(buyer.token),
      `mutation($id: ID!) { cancelOrder(id: $id) { id status } }`,
      {
        id: order.id,
      },
    );
    assert.deepEqual(cancelled.data?.cancelOrder, { id: order.id, status: 'pending' });
    const { rows } = await db.query('SELECT cancel_reason FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_reason, 'cancelled by request');

    const done = await place(buyer.token);
    await db.query("UPDATE orders SET status = 'rejected' WHERE id = $1", [done.order.id]);
    const refused = errorOf(
      await gql(as(buyer.token), `mutation($id: ID!) { cancelOrder(id: $id) { id } }`, { id: done.order.id }),
    );
    const rest = await as(buyer.token)({ method: 'POST', url: `/api/v1/orders/${done.order.id}/cancel` });
    assert.equal(rest.statusCode, 409);
    assert.deepEqual(refused, { status: 409, code: 'EDIT_CONFLICT', message: rest.json().message });
    assert.equal(refused.message, `conflict: order ${done.order.id} is rejected and cannot be cancelled`);
  });

  test('when an API key has orders:read only, then it reads but placing and cancelling are FORBIDDEN', async () => {
    const login = await as('')({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { authorization: '' },
      payload: { email: buyer.email, password: TEST_PASSWORD },
    });
    assert.equal(login.statusCode, 200, login.body);
    const jwt = login.json().access_token as string;
    const created = await as(jwt)({
      method: 'POST',
      url: '/api/v1/api-keys',
      payload: { name: 'reader', scopes: ['orders:read'] },
    });
    assert.equal(created.statusCode, 201, created.body);
    const key = created.json().key as string;
    const reader: Inject = (options) => {
      const opts = typeof options === 'string' ? { url: options } : options;
      return app.inject({ ...opts, headers: { 'x-api-key': key, ...opts.headers } });
    };
    const { order } = await place(buyer.token);
    const read = await gql(reader, `query($id: ID!) { order(id: $id) { id } }`, { id: order.id });
    assert.deepEqual(read.data?.order, { id: order.id });
    const placing = errorOf(await gql(reader, PLACE, { input: input() }));
    assert.equal(placing.status, 403);
    const cancelling = errorOf(
      await gql(reader, `mutation($id: ID!) { cancelOrder(id: $id) { id } }`, { id: order.id }),
    );
    assert.equal(cancelling.status, 403);
    const { rows } = await db.query('SELECT cancel_requested_at FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_requested_at, null);
  });
});
