// Order use cases, for every transport (REST here; gRPC, GraphQL and a broker's command
// consumer call the same functions). The requester is a plain argument; "not yours" and "not
// there" are the same 404. placeOrder deduplicates by idempotency key itself and enqueues the
// workflow's first step in the transaction that creates the order (src/orders/workflow.ts).
import { createHash } from 'node:crypto';
import { type Db, type Queryable, withTransaction } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import { RuleViolationError } from '../products/product.ts';
import { type PageQuery, productPage, productPrices, type Requester } from '../products/products.ts';
import { selectAnswer, storeAnswer, tryLockKey } from './idempotency-keys.sql.ts';
import {
  checkIdempotencyKey,
  checkOrderTotal,
  IdempotencyKeyBusyError,
  type Order,
  OrderConflictError,
  type OrderEnvelopeJson,
  type OrderEvent,
  OrderNotFoundError,
  type OrderStatus,
  type PlaceOrderInput,
  toOrderJson,
  validateNewOrder,
} from './order.ts';
import { ordersChanged } from './order-events.ts';
import type { OrderMetrics } from './orders.metrics.ts';
import * as orders from './orders.sql.ts';
import { enqueueStep, type Step, stepOf } from './workflow.queue.ts';

export type { Requester } from '../products/products.ts';

export type OrdersDeps = Readonly<{ db: Db; jobs: Jobs; metrics?: OrderMetrics }>;

// How long a key's answer is replayed.
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

// The answer to a placement: 202 with the order, or the first answer to the same key again.
export type Placement = Readonly<{ status: number; body: OrderEnvelopeJson; replayed: boolean }>;

function fingerprintOf(order: ReturnType<typeof validateNewOrder>): Buffer {
  return createHash('sha256')
    .update(JSON.stringify([order.lines, order.paymentToken]))
    .digest();
}

// The answer stored under the key: replayed when the request is the same, a 422 when not.
async function storedPlacement(
  client: Queryable,
  userId: number,
  key: string,
  fingerprint: Buffer,
): Promise<Placement | undefined> {
  const stored = await selectAnswer(client, userId, key);
  if (!stored) return undefined;
  if (!stored.fingerprint.equals(fingerprint))
    throw new RuleViolationError('validation: idempotency key reused with a different request');
  return { status: stored.status, body: stored.body as OrderEnvelopeJson, replayed: true };
}

// Places an order for `requester`. With a key: the same key and request within 24 h get the
// stored answer again, another request 422, and a duplicate while the first's transaction is
// open 409. The order, its first workflow step and the key's answer commit together or not at all;
// so does `claim`, a transport's own record of the request (the broker's message id), written
// in the same transaction before the order.
export async function placeOrder(
  deps: OrdersDeps,
  requester: Requester,
  input: PlaceOrderInput,
  idempotencyKey?: string,
  claim?: (tx: Queryable) => Promise<void>,
): Promise<Placement> {
  const key = idempotencyKey === undefined ? undefined : checkIdempotencyKey(idempotencyKey);
  const order = validateNewOrder(input);
  const fingerprint = fingerprintOf(order);
  const placement = await withTransaction(deps.db, async (client): Promise<Placement> => {
    if (key !== undefined) {
      // A stored answer is read before the key is claimed: replays of a request that has
      // ended do not claim it, so any number of them at once each get the answer, not a 409.
      const earlier = await storedPlacement(client, requester.userId, key, fingerprint);
      if (earlier) return earlier;
      if (!(await tryLockKey(client, requester.userId, key))) throw new IdempotencyKeyBusyError();
      // The first request may have committed between the read and the claim.
      const meanwhile = await storedPlacement(client, requester.userId, key, fingerprint);
      if (meanwhile) return meanwhile;
    }
    await claim?.(client);
    const prices = await productPrices(
      client,
      order.lines.map((line) => line.productId),
    );
    const unknown = order.lines.findIndex((line) => !prices.has(line.productId));
    if (unknown >= 0)
      throw new RuleViolationError(
        `validation: product ${order.lines[unknown]?.productId} does not exist`,
        `items[${unknown}].product_id`,
      );
    checkOrderTotal(order, prices);
    const placed = await orders.insertOrder(client, requester.userId, order, prices);
    await enqueueStep(deps.jobs, client, { orderId: placed.id, step: 'reserve' });
    const body = { order: toOrderJson(placed) };
    if (key !== undefined)
      await storeAnswer(
        client,
        requester.userId,
        key,
        { fingerprint, status: 202, body },
        IDEMPOTENCY_TTL_MS,
      );
    return { status: 202, body, replayed: false };
  });
  if (!placement.replayed) {
    deps.metrics?.transitions.inc({ status: 'pending' });
    await ordersChanged(deps.db);
  }
  return placement;
}

// The order, when it is the requester's or the requester is an admin.
export async function getOrder(db: Db, requester: Requester, id: string): Promise<Order> {
  const order = await orders.selectOrder(db, id);
  if (!order || (order.userId !== requester.userId && !requester.admin)) throw new OrderNotFoundError(id);
  return order;
}

// A page of the requester's orders (an admin's: everyone's), newest first, with the products
// API's paging rules.
export async function listOrders(
  db: Db,
  requester: Requester,
  query: PageQuery & { status: OrderStatus | null },
): Promise<{ data: Order[]; total: number; page: bigint; limit: number }> {
  const { page, limit, offset } = productPage(query);
  const { orders: data, total } = await orders.selectOrderPage(db, {
    userId: requester.admin ? null : requester.userId,
    status: query.status,
    limit,
    offset,
  });
  return { data, total, page, limit };
}

// Every status the order went through, oldest first.
export async function orderEvents(db: Db, requester: Requester, id: string): Promise<OrderEvent[]> {
  const order = await getOrder(db, requester, id);
  return orders.selectHistory(db, order.id);
}

// Asks for the order to be cancelled; the workflow's next step compensates (refund if charged,
// stock released) and ends it cancelled. A terminal order cannot be: 409.
export async function cancelOrder(db: Db, requester: Requester, id: string): Promise<Order> {
  const marked = await orders.requestCancel(db, id, requester, 'cancelled by request');
  if (marked) return marked;
  // Not marked: not the requester's (404), or terminal, which an order never leaves.
  const order = await getOrder(db, requester, id);
  throw new OrderConflictError(`conflict: order ${order.id} is ${order.status} and cannot be cancelled`);
}

// The operator's nudge (`greenlight orders retry`): the current step of an order in flight is
// enqueued again, e.g. after its jobs were deleted by hand. A step already queued or running
// makes this one a no-op, as every step is idempotent.
export async function retryOrder(deps: OrdersDeps, id: string): Promise<{ order: Order; step: Step }> {
  const order = await orders.selectOrder(deps.db, id);
  if (!order) throw new OrderNotFoundError(id);
  const step = stepOf(order.status);
  if (!step) throw new OrderConflictError(`conflict: order ${order.id} is ${order.status}: nothing to retry`);
  await enqueueStep(deps.jobs, deps.db, { orderId: order.id, step });
  return { order, step };
}
