// Orders on /api/v1: the HTTP contract, idempotency keys, permissions, cancels, the state
// machine the database enforces, and stock under concurrency. The workflow's job worker is not
// started here, so placed orders stay pending unless a test moves them (orders-workflow.test.ts
// runs the workflow against the payment stand-in).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ORDERS_TASKS } from '../src/orders/orders.tasks.ts';
import { withTransaction } from '../src/platform/db.ts';
import { releaseStock, reserveStock } from '../src/products/products.ts';
import { buildTestApp, captureLogger, createUser, withToken } from './helpers.ts';
import { createProduct } from './order-helpers.ts';

const { app, db, config } = await buildTestApp();
const { logger } = captureLogger();

type Res = Awaited<ReturnType<typeof app.inject>>;

function call(
  method: 'GET' | 'POST',
  url: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
) {
  return app.inject({
    method,
    url,
    headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers },
    ...(options.body === undefined
      ? {}
      : { payload: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
  });
}

function expectError(res: Res, code: number, message: string): void {
  assert.equal(res.statusCode, code, res.body);
  assert.deepEqual(res.json(), { code, message });
}

const product = (token: string, fields: Record<string, unknown> = {}) =>
  createProduct(withToken(app, token), { name: 'Keyboard', price: 149.99, ...fields });

const place = (token: string, body: unknown, key?: string) =>
  call('POST', '/api/v1/orders', {
    token,
    body,
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });

async function stockOf(id: number): Promise<number> {
  const { rows } = await db.query('SELECT stock FROM products WHERE id = $1', [id]);
  return rows[0].stock;
}

const seller = await createUser(db);
const buyer = await createUser(db);
const other = await createUser(db);

describe('placing an order', () => {
  test('when an order is placed, then 202 with the pending order, its Location, its history and its job', async () => {
    const keyboard = await product(seller.token, { price: 149.99 });
    const mouse = await product(seller.token, { price: 20.5 });
    const res = await place(buyer.token, {
      items: [
        { product_id: keyboard.id, quantity: 2 },
        { product_id: mouse.id, quantity: 1 },
      ],
      payment_token: 'tok_visa',
    });
    assert.equal(res.statusCode, 202, res.body);
    const { order } = res.json();
    assert.equal(res.headers.location, `/api/v1/orders/${order.id}`);
    assert.equal(res.headers['idempotent-replayed'], undefined);
    assert.deepEqual(Object.keys(order), [
      'id',
      'user_id',
      'status',
      'items',
      'total',
      'failure_reason',
      'created_at',
      'updated_at',
      'version',
    ]);
    assert.equal(order.status, 'pending');
    assert.equal(order.user_id, buyer.id);
    assert.equal(order.total, 320.48);
    assert.deepEqual(order.items, [
      { product_id: keyboard.id, quantity: 2, unit_price: 149.99 },
      { product_id: mouse.id, quantity: 1, unit_price: 20.5 },
    ]);
    const read = await call('GET', `/api/v1/orders/${order.id}`, { token: buyer.token });
    assert.deepEqual(read.json(), { order });
    const events = await call('GET', `/api/v1/orders/${order.id}/events`, { token: buyer.token });
    assert.equal(events.statusCode, 200, events.body);
    assert.deepEqual(
      events.json().events.map((e: { status: string; detail: string }) => [e.status, e.detail]),
      [['pending', 'order placed']],
    );
    const jobs = await db.query(
      "SELECT data FROM pgboss.job WHERE name = 'order-steps' AND (data->>'orderId')::bigint = $1",
      [order.id],
    );
    assert.deepEqual(
      jobs.rows.map((row) => row.data.step),
      ['reserve'],
    );
    // Stock is taken by the workflow, not at placement.
    assert.equal(await stockOf(keyboard.id), 10);
  });

  test('when the body breaks a rule, then 422 with the rule; a wrong shape is 400', async () => {
    const p = await product(seller.token);
    const cases: [unknown, number, string][] = [
      [{ items: [], payment_token: 'tok_visa' }, 422, 'validation: an order needs at least one item'],
      [
        { items: [{ product_id: p.id, quantity: 0 }], payment_token: 'tok_visa' },
        422,
        'validation: quantity must be between 1 and 1000',
      ],
      [
        { items: [{ product_id: p.id, quantity: 1001 }], payment_token: 'tok_visa' },
        422,
        'validation: quantity must be between 1 and 1000',
      ],
      [
        {
          items: [
            { product_id: p.id, quantity: 1 },
            { product_id: p.id, quantity: 2 },
          ],
          payment_token: 'tok_visa',
        },
        422,
        `validation: product ${p.id} appears more than once`,
      ],
      [
        { items: [{ product_id: 999999999, quantity: 1 }], payment_token: 'tok_visa' },
        422,
        'validation: product 999999999 does not exist',
      ],
      [
        {
          items: Array.from({ length: 51 }, (_, i) => ({ product_id: i + 1, quantity: 1 })),
          payment_token: 't',
        },
        422,
        'validation: an order has at most 50 items',
      ],
      [
        { items: [{ product_id: p.id, quantity: 1 }], payment_token: '' },
        422,
        'validation: payment_token is required',
      ],
      [{ items: [{ product_id: p.id, quantity: 1 }] }, 422, 'validation: payment_token is required'],
      [{ payment_token: 'tok_visa' }, 422, 'validation: items are required'],
      [
        { items: [{ product_id: 'x', quantity: 1 }], payment_token: 'tok_visa' },
        400,
        'items must be an array of {"product_id": integer, "quantity": integer}',
      ],
      [
        { items: [{ product_id: p.id, quantity: 1.5 }], payment_token: 'tok_visa' },
        400,
        'items must be an array of {"product_id": integer, "quantity": integer}',
      ],
      [{ items: [], payment_token: 5 }, 400, 'payment_token must be a string'],
      [{ items: [], payment_token: 'x', extra: 1 }, 400, 'body contains unknown key "extra"'],
      ['[1]', 400, 'body must be a JSON object'],
      ['{"items": [', 400, 'body contains badly-formed JSON'],
    ];
    for (const [body, code, message] of cases) expectError(await place(buyer.token, body), code, message);
    const empty = await call('POST', '/api/v1/orders', { token: buyer.token });
    expectError(empty, 400, 'body must not be empty');
  });

  test('when the total would pass 999999999999.99, then 422 with the cap and nothing is placed; at the cap, 202', async () => {
    // 12 lines of 1000 at 99999999.99 make 1199999999988.00, more than orders.total holds.
    const dear = await Promise.all(
      Array.from({ length: 12 }, () => product(seller.token, { price: 99_999_999.99, stock: 1000 })),
    );
    const rich = await createUser(db);
    const before = (await db.query('SELECT count(*)::int AS n FROM orders')).rows[0].n;
    const over = await place(rich.token, {
      items: dear.map((p) => ({ product_id: p.id, quantity: 1000 })),
      payment_token: 'tok_visa',
    });
    expectError(over, 422, 'validation: the order total must not be more than 999999999999.99');
    assert.equal((await db.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, before);
    assert.equal(await stockOf(dear[0]?.id ?? 0), 1000);
    // 10 of the 12 lines: 999999999900.00, within the cap.
    const within = await place(rich.token, {
      items: dear.slice(0, 10).map((p) => ({ product_id: p.id, quantity: 1000 })),
      payment_token: 'tok_visa',
    });
    assert.equal(within.statusCode, 202, within.body);
    assert.equal(within.json().order.total, 999_999_999_900);
  });

  test('when the request has no credential or an API key without orders:write, then 401 or 403', async () => {
    expectError(await place('', { items: [], payment_token: 't' }), 401, 'authorization header is required');
    const key = await call('POST', '/api/v1/api-keys', {
      token: buyer.token,
      body: { name: 'reader', scopes: ['orders:read'] },
    });
    assert.equal(key.statusCode, 201, key.body);
    const apiKey = key.json().key as string;
    const p = await product(seller.token);
    const body = { items: [{ product_id: p.id, quantity: 1 }], payment_token: 'tok_visa' };
    const refused = await call('POST', '/api/v1/orders', { body, headers: { 'x-api-key': apiKey } });
    expectError(refused, 403, 'you do not have permission to perform this action');
    const listed = await call('GET', '/api/v1/orders', { headers: { 'x-api-key': apiKey } });
    assert.equal(listed.statusCode, 200, listed.body);
  });
});

describe('idempotency keys', () => {
  async function body() {
    const p = await product(seller.token);
    return { items: [{ product_id: p.id, quantity: 1 }], payment_token: 'tok_visa' };
  }

  test('when the same key and body come again, then the first status, body and Location, replayed', async () => {
    const request = await body();
    const first = await place(buyer.token, request, 'key-replay-1');
    assert.equal(first.statusCode, 202, first.body);
    const again = await place(buyer.token, request, 'key-replay-1');
    assert.equal(again.statusCode, 202, again.body);
    assert.equal(again.body, first.body);
    assert.equal(again.headers.location, first.headers.location);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    const { rows } = await db.query('SELECT count(*)::int AS n FROM orders WHERE user_id = $1 AND id = $2', [
      buyer.id,
      first.json().order.id,
    ]);
    assert.equal(rows[0].n, 1);
    const count = await db.query(
      "SELECT count(*)::int AS n FROM order_idempotency_keys WHERE key = 'key-replay-1'",
    );
    assert.equal(count.rows[0].n, 1);
  });

  test('when the same key comes with another body, then 422 and no second order', async () => {
    const request = await body();
    const first = await place(buyer.token, request, 'key-reuse');
    assert.equal(first.statusCode, 202, first.body);
    const before = await db.query('SELECT count(*)::int AS n FROM orders');
    const other = await place(buyer.token, { ...request, payment_token: 'tok_other' }, 'key-reuse');
    expectError(other, 422, 'validation: idempotency key reused with a different request');
    const after = await db.query('SELECT count(*)::int AS n FROM orders');
    assert.equal(after.rows[0].n, before.rows[0].n);
  });

  test('when two users send the same key, then each gets an order of their own', async () => {
    const request = await body();
    const mine = await place(buyer.token, request, 'shared-key');
    const theirs = await place(other.token, request, 'shared-key');
    assert.equal(mine.statusCode, 202, mine.body);
    assert.equal(theirs.statusCode, 202, theirs.body);
    assert.notEqual(mine.json().order.id, theirs.json().order.id);
    assert.equal(theirs.headers['idempotent-replayed'], undefined);
  });

  test('when the same key is sent concurrently, then one order, the others 409 or a replay, and later a replay', async () => {
    const request = await body();
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => place(buyer.token, request, 'key-race')),
    );
    const created = answers.filter((res) => res.statusCode === 202 && !res.headers['idempotent-replayed']);
    assert.equal(created.length, 1, answers.map((res) => `${res.statusCode} ${res.body}`).join('\n'));
    for (const res of answers) {
      if (res.statusCode === 409)
        assert.deepEqual(res.json(), {
          code: 409,
          message: 'conflict: a request with this idempotency key is still in progress',
        });
      else assert.equal(res.body, created[0]?.body);
    }
    const later = await place(buyer.token, request, 'key-race');
    assert.equal(later.headers['idempotent-replayed'], 'true');
    assert.equal(later.body, created[0]?.body);
  });

  test('when a request has ended, then its retries all get its answer, however many come at once', async () => {
    const request = await body();
    const first = await place(buyer.token, request, 'key-retried');
    assert.equal(first.statusCode, 202, first.body);
    const retries = await Promise.all(
      Array.from({ length: 20 }, () => place(buyer.token, request, 'key-retried')),
    );
    for (const res of retries) {
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.headers['idempotent-replayed'], 'true');
      assert.equal(res.body, first.body);
    }
    // One retry holding the key (as each used to, while it read the answer) delays no other.
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        "SELECT pg_advisory_xact_lock(7235024, hashtext($1::text || ':' || 'key-retried'))",
        [buyer.id],
      );
      const res = await place(buyer.token, request, 'key-retried');
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.body, first.body);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  test('when a key is held by an open transaction, then a duplicate is answered 409 at once', async () => {
    const request = await body();
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query("SELECT pg_advisory_xact_lock(7235024, hashtext($1::text || ':' || 'key-held'))", [
        buyer.id,
      ]);
      const res = await place(buyer.token, request, 'key-held');
      expectError(res, 409, 'conflict: a request with this idempotency key is still in progress');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    const res = await place(buyer.token, request, 'key-held');
    assert.equal(res.statusCode, 202, res.body);
  });

  test('when a key has expired, then the same key places a new order and the sweep deletes expired keys', async () => {
    const request = await body();
    const first = await place(buyer.token, request, 'key-expiry');
    await db.query(
      "UPDATE order_idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-expiry'",
    );
    const second = await place(buyer.token, { ...request, payment_token: 'tok_new' }, 'key-expiry');
    assert.equal(second.statusCode, 202, second.body);
    assert.notEqual(second.json().order.id, first.json().order.id);
    assert.equal(second.headers['idempotent-replayed'], undefined);
    await db.query(
      "UPDATE order_idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-expiry'",
    );
    const sweep = ORDERS_TASKS.find((task) => task.name === 'delete-expired-idempotency-keys');
    assert.deepEqual(await sweep?.run({ db, logger, config }), { deleted: 1 });
    const { rows } = await db.query(
      "SELECT count(*)::int AS n FROM order_idempotency_keys WHERE key = 'key-expiry'",
    );
    assert.equal(rows[0].n, 0);
  });

  test('when the key is empty, too long or not visible ASCII, then 400; without a key, no deduplication', async () => {
    const request = await body();
    for (const key of ['x'.repeat(256), 'two words', 'caf\u00e9']) {
      const res = await call('POST', '/api/v1/orders', {
        token: buyer.token,
        body: request,
        headers: { 'idempotency-key': key },
      });
      expectError(res, 400, 'invalid Idempotency-Key header: it must be 1-255 visible ASCII characters');
    }
    const empty = await place(buyer.token, request, '');
    expectError(empty, 400, 'invalid Idempotency-Key header: it must be 1-255 visible ASCII characters');
    const a = await place(buyer.token, request);
    const b = await place(buyer.token, request);
    assert.notEqual(a.json().order.id, b.json().order.id);
  });
});

describe('reading, listing and cancelling', () => {
  async function order(token: string) {
    const p = await product(seller.token);
    const res = await place(token, { items: [{ product_id: p.id, quantity: 1 }], payment_token: 'tok_visa' });
    assert.equal(res.statusCode, 202, res.body);
    return res.json().order as { id: number; status: string };
  }

  test('when another user asks for an order, then 404 as for a missing one; an admin sees it', async () => {
    const o = await order(buyer.token);
    for (const path of [`/api/v1/orders/${o.id}`, `/api/v1/orders/${o.id}/events`]) {
      expectError(
        await call('GET', path, { token: other.token }),
        404,
        `not_found: order with id ${o.id} does not exist`,
      );
    }
    expectError(
      await call('POST', `/api/v1/orders/${o.id}/cancel`, { token: other.token }),
      404,
      `not_found: order with id ${o.id} does not exist`,
    );
    expectError(await call('GET', '/api/v1/orders/abc', { token: buyer.token }), 400, 'invalid order id');
    const admin = await createUser(db);
    await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [admin.id]);
    const seen = await call('GET', `/api/v1/orders/${o.id}`, { token: admin.token });
    assert.equal(seen.statusCode, 200, seen.body);
  });

  test('when orders are listed, then only the caller’s, newest first, filtered by status, with paging', async () => {
    const lister = await createUser(db);
    const a = await order(lister.token);
    const b = await order(lister.token);
    await order(other.token);
    const res = await call('GET', '/api/v1/orders?limit=1&page=2', { token: lister.token });
    assert.equal(res.statusCode, 200, res.body);
    const page = res.json();
    assert.deepEqual([page.total, page.page, page.limit], [2, 2, 1]);
    assert.deepEqual(
      page.data.map((o: { id: number }) => o.id),
      [a.id],
    );
    const all = await call('GET', '/api/v1/orders', { token: lister.token });
    assert.deepEqual(
      all.json().data.map((o: { id: number }) => o.id),
      [b.id, a.id],
    );
    const none = await call('GET', '/api/v1/orders?status=confirmed', { token: lister.token });
    assert.equal(none.json().total, 0);
    expectError(
      await call('GET', '/api/v1/orders?status=lost', { token: lister.token }),
      400,
      'invalid status: must be one of pending, reserved, paid, confirmed, rejected, cancelled',
    );
  });

  test('when a terminal order is cancelled, then 409; an open one 202, asked twice 202', async () => {
    const o = await order(buyer.token);
    const first = await call('POST', `/api/v1/orders/${o.id}/cancel`, { token: buyer.token });
    assert.equal(first.statusCode, 202, first.body);
    assert.equal(first.json().order.status, 'pending');
    const second = await call('POST', `/api/v1/orders/${o.id}/cancel`, { token: buyer.token });
    assert.equal(second.statusCode, 202, second.body);
    await db.query("UPDATE orders SET status = 'rejected' WHERE id = $1", [o.id]);
    expectError(
      await call('POST', `/api/v1/orders/${o.id}/cancel`, { token: buyer.token }),
      409,
      `conflict: order ${o.id} is rejected and cannot be cancelled`,
    );
  });
});

describe('the database', () => {
  test('when an UPDATE makes a transition the machine lacks, then the database refuses it', async () => {
    const p = await product(seller.token);
    const res = await place(buyer.token, {
      items: [{ product_id: p.id, quantity: 1 }],
      payment_token: 'tok_visa',
    });
    const id = res.json().order.id;
    for (const status of ['paid', 'confirmed']) {
      await assert.rejects(
        db.query('UPDATE orders SET status = $2 WHERE id = $1', [id, status]),
        /cannot go from pending/,
      );
    }
    await assert.rejects(
      db.query("UPDATE orders SET status = 'lost' WHERE id = $1", [id]),
      /pending to lost/,
    );
    await db.query("UPDATE orders SET status = 'reserved' WHERE id = $1", [id]);
    await db.query("UPDATE orders SET status = 'cancelled' WHERE id = $1", [id]);
    await assert.rejects(
      db.query("UPDATE orders SET status = 'pending' WHERE id = $1", [id]),
      /cannot go from cancelled/,
    );
    await assert.rejects(
      db.query("INSERT INTO orders (user_id, status, total, payment_token) VALUES ($1, 'paid', 1, 't')", [
        buyer.id,
      ]),
      /starts pending/,
    );
  });

  test('when many orders want the last units at once, then exactly the stock is taken and never below zero', async () => {
    const p = await product(seller.token, { stock: 5 });
    const other = await product(seller.token, { stock: 1000 });
    const attempts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        withTransaction(db, async (client) => {
          // Half of them in the other product order: reserveStock sorts, so no deadlock.
          const lines =
            i % 2 === 0
              ? [
                  { productId: p.id, quantity: 1 },
                  { productId: other.id, quantity: 1 },
                ]
              : [
                  { productId: other.id, quantity: 1 },
                  { productId: p.id, quantity: 1 },
                ];
          const shortage = await reserveStock(client, lines);
          if (shortage) throw Object.assign(new Error('short'), { shortage });
          return true;
        }).catch((err) => err.shortage),
      ),
    );
    assert.equal(attempts.filter((a) => a === true).length, 5);
    for (const a of attempts.filter((x) => x !== true))
      assert.deepEqual(a, { productId: p.id, missing: false });
    assert.equal(await stockOf(p.id), 0);
    assert.equal(await stockOf(other.id), 995);
    await withTransaction(db, (client) => releaseStock(client, [{ productId: p.id, quantity: 2 }]));
    assert.equal(await stockOf(p.id), 2);
    await assert.rejects(db.query('UPDATE products SET stock = -1 WHERE id = $1', [p.id]), /check/);
  });
});
