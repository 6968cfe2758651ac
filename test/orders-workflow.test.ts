// The order workflow against the payment stand-in: confirmation, declines, shortages, cancels
// racing a charge in flight, provider failures and lost answers, and the timeout sweep. Money is
// checked by the stand-in's ledger, stock by the products table.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sweepStaleOrders } from '../src/orders/orders.worker.ts';
import { ORDER_STEPS_QUEUE } from '../src/orders/workflow.queue.ts';
import { createUser, waitFor, withToken } from './helpers.ts';
import { buildWorkflowTestApp, createProduct } from './order-helpers.ts';
import { run } from './processes.ts';

const { app, db, dsn, config, standIn, jobs, metrics, logger } = await buildWorkflowTestApp();

const seller = await createUser(db);
const buyer = await createUser(db);

function call(method: 'GET' | 'POST', url: string, body?: unknown) {
  return app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${buyer.token}` },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const product = (fields: Record<string, unknown> = {}) => createProduct(withToken(app, seller.token), fields);

type OrderJson = { id: number; status: string; total: number; failure_reason: string | null };

async function place(productId: number, quantity: number, token = 'tok_visa'): Promise<OrderJson> {
  const res = await call('POST', '/api/v1/orders', {
    items: [{ product_id: productId, quantity }],
    payment_token: token,
  });
  assert.equal(res.statusCode, 202, res.body);
  return res.json().order;
}

async function settled(id: number, timeoutMs = 20_000): Promise<OrderJson> {
  return waitFor(
    `order ${id} to end`,
    async () => {
      const order = (await call('GET', `/api/v1/orders/${id}`)).json().order as OrderJson;
      return ['confirmed', 'rejected', 'cancelled'].includes(order.status) && order;
    },
    timeoutMs,
  );
}

async function history(id: number): Promise<string[]> {
  return (await call('GET', `/api/v1/orders/${id}/events`))
    .json()
    .events.map((e: { status: string }) => e.status);
}

async function stockOf(id: number): Promise<number> {
  return (await db.query('SELECT stock FROM products WHERE id = $1', [id])).rows[0].stock;
}

// What the provider knows the order by: its reference, the root of its idempotency keys.
async function referenceOf(id: number): Promise<string> {
  return (await db.query('SELECT payment_reference FROM orders WHERE id = $1', [id])).rows[0]
    .payment_reference;
}

const chargesOf = async (id: number) => {
  const reference = await referenceOf(id);
  return standIn.charges().filter((c) => c.reference === reference);
};
// What the provider kept of the order: succeeded charges less their refunds, in cents.
async function netCapture(id: number): Promise<number> {
  const charges = (await chargesOf(id)).filter((c) => c.status === 'succeeded');
  const refunded = standIn
    .refunds()
    .filter((r) => charges.some((c) => c.id === r.charge))
    .reduce((sum, r) => sum + r.amount, 0);
  return charges.reduce((sum, c) => sum + c.amount, 0) - refunded;
}

describe('the order workflow', () => {
  test('when the card is good, then the order goes pending → reserved → paid → confirmed, charged once', async () => {
    const p = await product({ price: 12.5, stock: 10 });
    const order = await place(p.id, 3);
    const done = await settled(order.id);
    assert.equal(done.status, 'confirmed');
    assert.deepEqual(await history(order.id), ['pending', 'reserved', 'paid', 'confirmed']);
    assert.equal(await stockOf(p.id), 7);
    assert.equal((await chargesOf(order.id)).length, 1);
    assert.equal(await netCapture(order.id), 3750);
    assert.equal((await chargesOf(order.id))[0]?.idempotency_key, `${await referenceOf(order.id)}-charge`);
    const text = await metrics.registry.metrics();
    assert.match(text, /greenlight_orders_total\{status="confirmed"\} [1-9]/);
    assert.match(text, /greenlight_order_step_duration_seconds_count\{step="charge",outcome="done"\} [1-9]/);
  });

  test('when the card is declined, then the order is cancelled with the reason and its stock given back', async () => {
    const p = await product({ stock: 4 });
    const order = await place(p.id, 4, 'tok_declined');
    const done = await settled(order.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.failure_reason, 'payment declined: card_declined');
    assert.deepEqual(await history(order.id), ['pending', 'reserved', 'cancelled']);
    assert.equal(await stockOf(p.id), 4);
    assert.equal(await netCapture(order.id), 0);
  });

  test('when the products are free, then the order is confirmed without a charge', async () => {
    const p = await product({ price: 0, stock: 3 });
    const order = await place(p.id, 2);
    const done = await settled(order.id);
    assert.equal(done.status, 'confirmed', JSON.stringify(done));
    assert.deepEqual(await history(order.id), ['pending', 'reserved', 'paid', 'confirmed']);
    assert.equal(await stockOf(p.id), 1);
    assert.equal((await chargesOf(order.id)).length, 0);
  });

  test('when the provider already knows the key an order id makes (another database’s order), then the order is charged under keys of its own', async () => {
    const { rows } = await db.query(
      'SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next FROM orders_id_seq',
    );
    const next = Number(rows[0].next);
    // Another installation's order of the same id, amount and card, charged before.
    const theirs = await fetch(`${standIn.url}/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `order-${next}-charge` },
      body: JSON.stringify({ amount: 1250, currency: 'usd', reference: `order-${next}`, source: 'tok_visa' }),
    });
    assert.equal(theirs.status, 201);
    const theirCharge = (await theirs.json()).id;
    const p = await product();
    const order = await place(p.id, 1);
    assert.equal(order.id, next);
    const done = await settled(order.id);
    assert.equal(done.status, 'confirmed');
    const ours = await chargesOf(order.id);
    assert.equal(ours.length, 1);
    assert.notEqual(ours[0]?.id, theirCharge);
    assert.equal(await netCapture(order.id), 1250);
  });

  test('when stock is short or the product is gone, then the order is rejected naming the product', async () => {
    const p = await product({ stock: 2 });
    const order = await place(p.id, 3);
    const done = await settled(order.id);
    assert.equal(done.status, 'rejected');
    assert.equal(done.failure_reason, `insufficient stock for product ${p.id}`);
    assert.equal(await stockOf(p.id), 2);
    assert.equal((await chargesOf(order.id)).length, 0);
  });

  test('when the provider fails and loses answers, then the order is still charged exactly once', async () => {
    const p = await product();
    standIn.failNext('error', 'lost', 'error');
    const order = await place(p.id, 1);
    const done = await settled(order.id, 30_000);
    assert.equal(done.status, 'confirmed');
    assert.equal((await chargesOf(order.id)).filter((c) => c.status === 'succeeded').length, 1);
    assert.equal(await netCapture(order.id), 1250);
  });

  test('when a cancel comes while the charge is in flight, then the charge is refunded and the stock released', async () => {
    const p = await product({ stock: 5 });
    standIn.behaviour.latencyMs = 1500;
    try {
      const order = await place(p.id, 2);
      const reference = await referenceOf(order.id);
      await waitFor('the charge to be sent', () =>
        standIn.calls.some((c) => c.idempotencyKey === `${reference}-charge`),
      );
      const cancel = await call('POST', `/api/v1/orders/${order.id}/cancel`);
      assert.equal(cancel.statusCode, 202, cancel.body);
      const done = await settled(order.id);
      assert.equal(done.status, 'cancelled');
      assert.equal(done.failure_reason, 'cancelled by request');
      assert.equal(await stockOf(p.id), 5);
      assert.equal(await netCapture(order.id), 0);
      assert.ok(standIn.refunds().some((r) => r.idempotency_key === `${reference}-refund`));
      const again = await call('POST', `/api/v1/orders/${order.id}/cancel`);
      assert.equal(again.statusCode, 409);
    } finally {
      standIn.behaviour.latencyMs = 0;
    }
  });

  test('when an order stays in flight past -orders-timeout, then the sweep cancels it with its compensations', async () => {
    const p = await product({ stock: 5 });
    standIn.behaviour.errorRate = 1;
    let order: OrderJson;
    try {
      order = await place(p.id, 1);
      await waitFor('the charge to be tried', async () => {
        const { rows } = await db.query('SELECT charge_attempted_at FROM orders WHERE id = $1', [order.id]);
        return rows[0].charge_attempted_at !== null;
      });
      await db.query("UPDATE orders SET created_at = now() - interval '1 hour' WHERE id = $1", [order.id]);
      assert.deepEqual(await sweepStaleOrders({ db, jobs, logger, config }), { stale: 1 });
    } finally {
      standIn.behaviour.errorRate = 0;
    }
    const done = await settled(order.id, 60_000);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.failure_reason, 'timed out');
    assert.equal(await stockOf(p.id), 5);
    assert.equal(await netCapture(order.id), 0);
  });
});

describe('greenlight orders', () => {
  test('when an operator lists, shows and retries orders, then the CLI prints them and refuses what ended', async (t) => {
    const p = await product();
    const order = await place(p.id, 1);
    await settled(order.id);
    const list = await run(t, ['orders', 'list', 'confirmed', '-db-dsn', dsn]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^${order.id}\\t${buyer.id}\\tconfirmed\\t12.50\\t`, 'm'));
    const show = await run(t, ['orders', 'show', String(order.id), '-db-dsn', dsn]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(
      show.stdout,
      /\tpending\torder placed\n.*\treserved\tstock reserved\n.*\tpaid\tcharged ch_\w+\n.*\tconfirmed\tconfirmed/,
    );
    const retry = await run(t, ['orders', 'retry', String(order.id), '-db-dsn', dsn]);
    assert.equal(retry.code, 1);
    assert.equal(retry.stderr.trim(), `greenlight: order ${order.id} is confirmed: nothing to retry`);

    // An order in flight whose step job is gone (deleted by hand while its charge failed) gets
    // its step back and ends.
    standIn.behaviour.errorRate = 1;
    let stuck: OrderJson | undefined;
    try {
      const placed = await place(p.id, 1);
      stuck = placed;
      // Deleted between two attempts (the job waiting for its retry), so no run of it goes on.
      await waitFor(
        'the failed charge step to be deleted',
        async () => {
          const { rowCount } = await db.query(
            "DELETE FROM pgboss.job WHERE name = $1 AND state = 'retry' AND (data->>'orderId')::bigint = $2",
            [ORDER_STEPS_QUEUE, placed.id],
          );
          return rowCount === 1;
        },
        30_000,
      );
    } finally {
      standIn.behaviour.errorRate = 0;
    }
    const retried = await run(t, ['orders', 'retry', String(stuck.id), '-db-dsn', dsn]);
    assert.equal(retried.code, 0, retried.stderr);
    assert.equal(retried.stdout.trim(), `order ${stuck.id} (reserved): step charge enqueued`);
    assert.equal((await settled(stuck.id)).status, 'confirmed');
  });
});
