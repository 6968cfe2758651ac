// OrdersService in-process, through the independent client (grpc-js, the .proto read at run
// time) and the generated Connect client: the answers, rules, messages and idempotency keys of
// /api/v1/orders (keys shared with REST), "not yours" as NOT_FOUND, cancels, the scopes, and the
// change stream per owner with resume. Only the last suite runs the workflow (against the
// payment stand-in); elsewhere placed orders stay pending unless a test moves them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Code } from '@connectrpc/connect';
import { BadRequestSchema } from '../gen/google/rpc/error_details_pb.ts';
import { OrdersService } from '../gen/greenlight/v1/orders_pb.ts';
import { createApiKey } from '../src/auth/apikey.ts';
import { tryLockKey } from '../src/orders/idempotency-keys.sql.ts';
import {
  connectClient,
  connectFailure,
  GRPC_FLAGS,
  grpc,
  grpcJsClient,
  grpcJsError,
  PROTOCOLS,
  startGrpc,
} from './grpc-helpers.ts';
import { buildTestApp, createUser, waitFor, withToken } from './helpers.ts';
import { allOrdersEnded, buildWorkflowTestApp, createProduct, ORDER_FLOW } from './order-helpers.ts';

const { status } = grpc;
const SERVICE = 'greenlight.v1.OrdersService';

type RestOrder = {
  id: number;
  user_id: number;
  status: string;
  items: { product_id: number; quantity: number; unit_price: number }[];
  total: number;
  failure_reason: string | null;
  created_at: string;
  updated_at: string;
  version: number;
};

// The REST order as grpc-js shows the message (int64 as strings, an unset optional absent).
const asGrpcJs = (order: RestOrder) => ({
  id: String(order.id),
  userId: String(order.user_id),
  status: order.status,
  items: order.items.map((item) => ({
    productId: String(item.product_id),
    quantity: item.quantity,
    unitPrice: item.unit_price,
  })),
  total: order.total,
  ...(order.failure_reason === null ? {} : { failureReason: order.failure_reason }),
  createdAt: order.created_at,
  updatedAt: order.updated_at,
  version: order.version,
});

describe('OrdersService without the workflow', async () => {
  const { app, db, config } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const seller = await createUser(db);
  const buyer = await createUser(db);
  const other = await createUser(db);
  const boss = await createUser(db);
  await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [boss.id]);
  const lamp = await createProduct(withToken(app, seller.token), { stock: 100 });
  const ordersAs = (token?: string) => grpcJsClient(address, SERVICE, token);
  const buyerOrders = ordersAs(buyer.token);
  const request = (quantity = 2, productId = lamp.id) => ({
    items: [{ productId: String(productId), quantity }],
    paymentToken: 'tok_visa',
  });
  const orderCount = async () =>
    (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')).rows[0]?.n ?? 0;
  const restGet = async (id: string, token = buyer.token) =>
    (await withToken(app, token)(`/api/v1/orders/${id}`)).json();

  test('when an order is placed with a key and sent again, then the same pending order comes back with idempotent-replayed, once in the database; REST with the key replays it too', async () => {
    const before = await orderCount();
    const key = { 'idempotency-key': 'grpc-replay-1' };
    const first = await buyerOrders.withMetadata('PlaceOrder', request(), key);
    assert.deepEqual(first.metadata.get('idempotent-replayed'), []);
    const order = first.answer.order;
    assert.equal(order.status, 'pending');
    assert.equal(order.userId, String(buyer.id));
    assert.equal(order.total, 25);
    assert.deepEqual(order.items, [{ productId: String(lamp.id), quantity: 2, unitPrice: 12.5 }]);
    assert.deepEqual(order, asGrpcJs((await restGet(order.id)).order));

    const again = await buyerOrders.withMetadata('PlaceOrder', request(), key);
    assert.deepEqual(again.answer, first.answer);
    assert.deepEqual(again.metadata.get('idempotent-replayed'), ['true']);
    assert.equal(await orderCount(), before + 1);

    const rest = await withToken(
      app,
      buyer.token,
    )({
      method: 'POST',
      url: '/api/v1/orders',
      headers: { 'idempotency-key': 'grpc-replay-1' },
      payload: { items: [{ product_id: lamp.id, quantity: 2 }], payment_token: 'tok_visa' },
    });
    assert.equal(rest.headers['idempotent-replayed'], 'true');
    assert.deepEqual(asGrpcJs(rest.json().order), order);
  });

  test('when a key is reused with another request, then INVALID_ARGUMENT with REST message and no order', async () => {
    const key = { 'idempotency-key': 'grpc-reuse' };
    await buyerOrders.withMetadata('PlaceOrder', request(1), key);
    const before = await orderCount();
    const reused = await grpcJsError(buyerOrders.withMetadata('PlaceOrder', request(3), key));
    assert.deepEqual(
      [reused.code, reused.details],
      [status.INVALID_ARGUMENT, 'validation: idempotency key reused with a different request'],
    );
    assert.equal(await orderCount(), before);
  });

  test('when no key is sent, then each call places an order of its own; a key not of 1-255 visible ASCII characters is INVALID_ARGUMENT and places none', async () => {
    const one = await buyerOrders.withMetadata('PlaceOrder', request(), {});
    const two = await buyerOrders.withMetadata('PlaceOrder', request(), {});
    assert.notEqual(one.answer.order.id, two.answer.order.id);
    assert.deepEqual(two.metadata.get('idempotent-replayed'), []);
    const before = await orderCount();
    for (const key of ['', 'with space', 'k'.repeat(256)]) {
      const err = await grpcJsError(
        buyerOrders.withMetadata('PlaceOrder', request(), { 'idempotency-key': key }),
      );
      assert.deepEqual(
        [err.code, err.details],
        [
          status.INVALID_ARGUMENT,
          'invalid Idempotency-Key header: it must be 1-255 visible ASCII characters',
        ],
        JSON.stringify(key),
      );
    }
    assert.equal(await orderCount(), before);
  });

  test('when the key is held by a placement not yet committed, then ABORTED at once; once it is released, the call succeeds', async () => {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      assert.equal(await tryLockKey(client, buyer.id, 'grpc-held'), true);
      const err = await grpcJsError(
        buyerOrders.withMetadata('PlaceOrder', request(), { 'idempotency-key': 'grpc-held' }),
      );
      assert.deepEqual(
        [err.code, err.details],
        [status.ABORTED, 'conflict: a request with this idempotency key is still in progress'],
      );
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    const placed = await buyerOrders.withMetadata('PlaceOrder', request(), {
      'idempotency-key': 'grpc-held',
    });
    assert.equal(placed.answer.order.status, 'pending');
  });

  test("when another user reads, lists the events of or cancels an order, then NOT_FOUND with REST's message; an admin reads it", async () => {
    const { order } = await buyerOrders.call.PlaceOrder(request());
    const otherOrders = ordersAs(other.token).call;
    const rest = await restGet(order.id, other.token);
    for (const call of [otherOrders.GetOrder, otherOrders.ListOrderEvents, otherOrders.CancelOrder]) {
      const err = await grpcJsError(call({ id: order.id }));
      assert.deepEqual([err.code, err.details], [status.NOT_FOUND, rest.message]);
    }
    assert.deepEqual(await otherOrders.ListOrders({}), { data: [], total: '0', page: '1', limit: 20 });
    assert.deepEqual((await ordersAs(boss.token).call.GetOrder({ id: order.id })).order, order);
    const { rows } = await db.query('SELECT cancel_reason FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_reason, null);
  });

  test('when orders are listed and their history read, then the answers are those of GET /api/v1/orders; an unknown status is INVALID_ARGUMENT', async () => {
    await buyerOrders.call.PlaceOrder(request());
    const page = await buyerOrders.call.ListOrders({ status: 'pending', page: 1, limit: 50 });
    const rest = (await withToken(app, buyer.token)('/api/v1/orders?status=pending&page=1&limit=50')).json();
    assert.deepEqual(page, {
      data: rest.data.map(asGrpcJs),
      total: String(rest.total),
      page: '1',
      limit: 50,
    });
    assert.ok(page.data.length >= 2);
    const { events } = await buyerOrders.call.ListOrderEvents({ id: page.data[0].id });
    const history = await withToken(app, buyer.token)(`/api/v1/orders/${page.data[0].id}/events`);
    assert.deepEqual(events, history.json().events);
    assert.deepEqual(
      events.map((e: { status: string; detail: string }) => [e.status, e.detail]),
      [['pending', 'order placed']],
    );
    const err = await grpcJsError(buyerOrders.call.ListOrders({ status: 'lost' }));
    const restErr = await withToken(app, buyer.token)('/api/v1/orders?status=lost');
    assert.deepEqual([err.code, err.details], [status.INVALID_ARGUMENT, restErr.json().message]);
  });

  test('when a pending order is cancelled, then the cancel is recorded; an order that has ended is FAILED_PRECONDITION with REST message', async () => {
    const { order } = await buyerOrders.call.PlaceOrder(request());
    const cancelled = await buyerOrders.call.CancelOrder({ id: order.id });
    assert.equal(cancelled.order.id, order.id);
    assert.equal(cancelled.order.status, 'pending');
    const { rows } = await db.query('SELECT cancel_reason FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_reason, 'cancelled by request');

    const done = (await buyerOrders.call.PlaceOrder(request())).order;
    await db.query("UPDATE orders SET status = 'rejected' WHERE id = $1", [done.id]);
    const err = await grpcJsError(buyerOrders.call.CancelOrder({ id: done.id }));
    assert.deepEqual(
      [err.code, err.details],
      [status.FAILED_PRECONDITION, `conflict: order ${done.id} is rejected and cannot be cancelled`],
    );
    const rest = await withToken(
      app,
      buyer.token,
    )({ method: 'POST', url: `/api/v1/orders/${done.id}/cancel` });
    assert.equal(rest.json().message, err.details);
  });

  for (const protocol of PROTOCOLS) {
    test(`when ${protocol} places with a key twice, then the same order, the second with idempotent-replayed`, async () => {
      const client = connectClient(OrdersService, address, protocol, buyer.token);
      const answers = [];
      for (let i = 0; i < 2; i++) {
        let replayed: string | null = null;
        const headers = { 'idempotency-key': `connect-${protocol}` };
        const answer = await client.placeOrder(
          { items: [{ productId: BigInt(lamp.id), quantity: 1 }], paymentToken: 'tok_visa' },
          { headers, onHeader: (received) => (replayed = received.get('idempotent-replayed')) },
        );
        answers.push({ answer, replayed });
      }
      assert.equal(answers[0]?.replayed, null);
      assert.equal(answers[1]?.replayed, 'true');
      assert.deepEqual(answers[1]?.answer, answers[0]?.answer);
      assert.equal(answers[0]?.answer.order?.failureReason, undefined);
    });
  }

  test('when the items break a rule, then INVALID_ARGUMENT with REST message and a field violation naming the item', async () => {
    const client = connectClient(OrdersService, address, 'grpc', buyer.token);
    const item = (productId: number, quantity: number) => ({ productId: BigInt(productId), quantity });
    const cases: [{ productId: bigint; quantity: number }[], string, string][] = [
      [[], 'tok_visa', 'items'],
      [[item(lamp.id, 1), item(999_998, 0)], 'tok_visa', 'items[1].quantity'],
      [[item(lamp.id, 1), item(lamp.id, 2)], 'tok_visa', 'items[1].product_id'],
      [[item(999_999, 1)], 'tok_visa', 'items[0].product_id'],
      [[item(lamp.id, 1)], ' ', 'payment_token'],
    ];
    for (const [items, paymentToken, field] of cases) {
      const err = await connectFailure(client.placeOrder({ items, paymentToken }));
      const body = {
        items: items.map((i) => ({ product_id: Number(i.productId), quantity: i.quantity })),
        payment_token: paymentToken,
      };
      const rest = await withToken(
        app,
        buyer.token,
      )({ method: 'POST', url: '/api/v1/orders', payload: body });
      assert.equal(rest.statusCode, 422);
      assert.deepEqual([err.code, err.rawMessage], [Code.InvalidArgument, rest.json().message], field);
      const violations = err.findDetails(BadRequestSchema)[0]?.fieldViolations ?? [];
      assert.deepEqual(
        violations.map((v) => [v.field, v.description]),
        [[field, rest.json().message]],
      );
    }
  });

  test('when there is no credential, then UNAUTHENTICATED; an API key without the scope is PERMISSION_DENIED, with REST messages', async () => {
    const anonymous = await grpcJsError(ordersAs().call.ListOrders({}));
    assert.deepEqual(
      [anonymous.code, anonymous.details],
      [status.UNAUTHENTICATED, 'authorization header is required'],
    );
    const keyWith = async (scopes: string[]) =>
      (
        await createApiKey(
          db,
          { id: buyer.id, tokenGeneration: 0 },
          { name: scopes.join(), scopes, expiresAt: null },
          {},
        )
      ).plaintext;
    const reader = connectClient(OrdersService, address, 'connect', await keyWith(['orders:read']));
    assert.equal((await reader.listOrders({})).page, 1n);
    const { order } = await buyerOrders.call.PlaceOrder(request());
    const before = await orderCount();
    for (const refused of [
      () =>
        reader.placeOrder({ items: [{ productId: BigInt(lamp.id), quantity: 1 }], paymentToken: 'tok_visa' }),
      () => reader.cancelOrder({ id: BigInt(order.id) }),
    ]) {
      const err = await connectFailure(refused());
      assert.deepEqual(
        [err.code, err.rawMessage],
        [Code.PermissionDenied, 'you do not have permission to perform this action'],
      );
    }
    assert.equal(await orderCount(), before);
    const { rows } = await db.query('SELECT cancel_reason FROM orders WHERE id = $1', [order.id]);
    assert.equal(rows[0].cancel_reason, null);
    const writer = connectClient(OrdersService, address, 'grpc', await keyWith(['orders:write']));
    const watch = await connectFailure(
      (async () => {
        for await (const _ of writer.watchOrderChanges({})) assert.fail('a change');
      })(),
    );
    assert.equal(watch.code, Code.PermissionDenied);
    const unauthenticated = await connectFailure(
      connectClient(OrdersService, address, 'grpc').getOrder({ id: 1n }),
    );
    assert.equal(unauthenticated.code, Code.Unauthenticated);
  });
});

describe('WatchOrderChanges with the workflow running', async () => {
  const { app, db, config } = await buildWorkflowTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const seller = await createUser(db);
  const alice = await createUser(db);
  const bob = await createUser(db);
  const boss = await createUser(db);
  await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [boss.id]);
  const lamp = await createProduct(withToken(app, seller.token), { stock: 1000 });
  const FLOW = ORDER_FLOW;

  const place = async (token: string) => {
    const client = connectClient(OrdersService, address, 'grpc', token);
    const { order } = await client.placeOrder({
      items: [{ productId: BigInt(lamp.id), quantity: 1 }],
      paymentToken: 'tok_visa',
    });
    return order?.id ?? assert.fail('no order');
  };
  const allEnded = () => allOrdersEnded(db);
  const streamsOpen = (n: number) =>
    waitFor('the streams to open', async () =>
      (await app.inject('/metrics')).body.includes(`greenlight_streams_open{transport="grpc"} ${n}`),
    );

  type Change = { type: string; orderId: string; userId: string; status: string };
  const statuses = (changes: Change[], id: string) =>
    changes.filter((c) => c.orderId === id).map((c) => c.status);

  test("when two users' orders go through the workflow, then each owner's stream (Connect, grpc-js) gets only its own order's changes in order, and an admin's gets both", async (t) => {
    const live = new AbortController();
    t.after(() => live.abort());
    const changes: Record<'alice' | 'boss', Change[]> = { alice: [], boss: [] };
    for (const [name, token] of [
      ['alice', alice.token],
      ['boss', boss.token],
    ] as const) {
      const client = connectClient(OrdersService, address, 'grpc', token);
      (async () => {
        for await (const { event, order } of client.watchOrderChanges({}, { signal: live.signal })) {
          changes[name].push({
            type: event?.type ?? '',
            orderId: String(order?.id),
            userId: String(order?.userId),
            status: order?.status ?? '',
          });
        }
      })().catch(() => {});
    }
    const { raw, metadata } = grpcJsClient(address, SERVICE, bob.token);
    type Message = { event: { type: string }; order: { id: string; userId: string; status: string } };
    const watch = raw.WatchOrderChanges as (
      request: object,
      m: grpc.Metadata,
    ) => grpc.ClientReadableStream<Message>;
    const bobStream = watch.call(raw, {}, metadata());
    const bobs: Change[] = [];
    bobStream.on('data', ({ event, order }: Message) =>
      bobs.push({ type: event.type, orderId: order.id, userId: order.userId, status: order.status }),
    );
    bobStream.on('error', () => {});
    t.after(() => bobStream.cancel());
    await streamsOpen(3);

    const mine = String(await place(alice.token));
    const theirs = String(await place(bob.token));
    await waitFor(
      'every transition',
      () => changes.alice.length >= 4 && bobs.length >= 4 && changes.boss.length >= 8,
      20_000,
    );
    await allEnded();
    assert.deepEqual(statuses(changes.alice, mine), FLOW);
    assert.deepEqual(
      changes.alice.map((c) => c.type),
      ['order.created', 'order.updated', 'order.updated', 'order.updated'],
    );
    assert.deepEqual(new Set(changes.alice.map((c) => c.userId)), new Set([String(alice.id)]));
    assert.deepEqual(statuses(bobs, theirs), FLOW);
    assert.deepEqual(new Set(bobs.map((o) => o.userId)), new Set([String(bob.id)]));
    assert.deepEqual(statuses(changes.boss, mine), FLOW);
    assert.deepEqual(statuses(changes.boss, theirs), FLOW);
    const shown = await connectClient(OrdersService, address, 'grpc', alice.token).getOrder({
      id: BigInt(mine),
    });
    assert.equal(shown.order?.status, 'confirmed');
  });

  test("when an owner resumes after one of its events, then it gets exactly its own later events, none of another user's between", async () => {
    const before = (await db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM order_events'))
      .rows[0]?.id;
    const first = await place(alice.token);
    const theirs = await place(bob.token);
    const second = await place(alice.token);
    await allEnded();
    const { rows } = await db.query<{ id: string; order_id: string }>(
      'SELECT id, order_id FROM order_events WHERE id > $1 ORDER BY xid, id',
      [before],
    );
    const firstEvent = rows.find((r) => BigInt(r.order_id) === first)?.id ?? assert.fail('no event');
    const expected = rows
      .filter((r) => r.id !== firstEvent && BigInt(r.order_id) !== theirs)
      .map((r) => BigInt(r.id));
    assert.equal(expected.length, 7);

    const client = connectClient(OrdersService, address, 'connect', alice.token);
    const resumed = new AbortController();
    const received: { id: bigint; orderId: bigint }[] = [];
    for await (const { event, order } of client.watchOrderChanges(
      { afterEventId: BigInt(firstEvent) },
      { signal: resumed.signal },
    )) {
      received.push({ id: event?.id ?? 0n, orderId: order?.id ?? 0n });
      if (received.length === expected.length) break;
    }
    assert.deepEqual(
      received.map((r) => r.id),
      expected,
    );
    assert.deepEqual(new Set(received.map((r) => r.orderId)), new Set([first, second]));
  });
});
