// The order workflow against a provider that answers outside the contract: between the
// workflow and the stand-in, a proxy that can turn the stand-in's succeeded charges into
// "pending" ones, as real providers answer some payment methods. The charge exists; the
// workflow must neither end the order as declined nor lose the money.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { createUser, waitFor, withToken } from './helpers.ts';
import { buildWorkflowTestApp, createProduct } from './order-helpers.ts';

let standInUrl = '';
let pending = true;
const proxy = createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  const answer = await fetch(`${standInUrl}${req.url}`, {
    method: req.method,
    headers: {
      'content-type': 'application/json',
      'idempotency-key': String(req.headers['idempotency-key']),
    },
    ...(req.method === 'POST' ? { body } : {}),
  });
  let text = await answer.text();
  if (pending && req.url === '/v1/charges' && answer.status === 201)
    text = text.replace('"succeeded"', '"pending"');
  res.writeHead(answer.status, { 'content-type': 'application/json' });
  res.end(text);
});
proxy.listen(0, '127.0.0.1');
await once(proxy, 'listening');
after(() => proxy.close());

const { app, db, standIn, workflowLines } = await buildWorkflowTestApp({}, (url) => {
  standInUrl = url;
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
const seller = await createUser(db);
const buyer = await createUser(db);

test('when a charge is answered "pending", then the order waits, retrying the same key, and is paid once the provider says succeeded', async () => {
  const product = await createProduct(withToken(app, seller.token), { price: 12.5, stock: 5 });
  const placed = await withToken(
    app,
    buyer.token,
  )({
    method: 'POST',
    url: '/api/v1/orders',
    payload: { items: [{ product_id: product.id, quantity: 2 }], payment_token: 'tok_visa' },
  });
  assert.equal(placed.statusCode, 202, placed.body);
  const id: number = placed.json().order.id;
  const orderOf = async () => (await withToken(app, buyer.token)(`/api/v1/orders/${id}`)).json().order;

  // The stand-in took the money on the first call; each retry replays that charge.
  await waitFor(
    'the charge to be retried',
    () => standIn.calls.filter((c) => c.path === '/v1/charges').length >= 2,
  );
  const waiting = await orderOf();
  assert.equal(waiting.status, 'reserved', JSON.stringify(waiting));
  assert.equal(standIn.charges().length, 1);

  pending = false;
  const done = await waitFor(
    'the order to be confirmed',
    async () => {
      const order = await orderOf();
      return order.status === 'confirmed' && order;
    },
    20_000,
  );
  assert.equal(done.failure_reason, null);
  const [charge] = standIn.charges();
  assert.equal(standIn.charges().length, 1);
  assert.equal(charge?.amount, 2500);
  const { rows } = await db.query('SELECT detail FROM order_history WHERE order_id = $1 ORDER BY id', [id]);
  assert.deepEqual(
    rows.map((r) => r.detail),
    ['order placed', 'stock reserved', `charged ${charge?.id}`, 'confirmed'],
  );
});

test('when no charge ever reached the provider and the order is cancelled, then it is cancelled with nothing charged and nothing refunded', async () => {
  const port = (proxy.address() as AddressInfo).port;
  proxy.closeAllConnections();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
  const callsBefore = standIn.calls.length;
  const linesBefore = workflowLines.length;
  const product = await createProduct(withToken(app, seller.token), { price: 8, stock: 5 });
  const buyerApi = withToken(app, buyer.token);
  const placed = await buyerApi({
    method: 'POST',
    url: '/api/v1/orders',
    payload: { items: [{ product_id: product.id, quantity: 1 }], payment_token: 'tok_visa' },
  });
  assert.equal(placed.statusCode, 202, placed.body);
  const id: number = placed.json().order.id;
  // The charge step ran and found no provider listening.
  await waitFor('a refused charge', () =>
    workflowLines.slice(linesBefore).some((l) => l.msg === 'payment provider unavailable'),
  );
  assert.equal((await buyerApi({ method: 'POST', url: `/api/v1/orders/${id}/cancel` })).statusCode, 202);

  proxy.listen(port, '127.0.0.1');
  await once(proxy, 'listening');
  const cancelled = await waitFor(
    'the order to be cancelled',
    async () => {
      const order = (await buyerApi(`/api/v1/orders/${id}`)).json().order;
      return order.status === 'cancelled' && order;
    },
    30_000,
  );
  assert.equal(cancelled.failure_reason, 'cancelled by request');
  assert.deepEqual(standIn.calls.slice(callsBefore), [], 'the provider was called');
});
