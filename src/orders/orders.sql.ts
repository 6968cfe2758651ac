// SQL for orders, their items, history, outbox and idempotency keys. Every status change is
// one conditional UPDATE (`WHERE status = <expected>`) that writes its history row and its
// outbox event in the same statement: of two steps racing for one order, the one whose UPDATE
// finds the expected status wins, and the other changes nothing. The database refuses any
// change the state machine lacks (trigger of migration 000023).
import type { Queryable } from '../platform/db.ts';
import { eventTraceContext, lockSubject, type Outbox, recordEvents } from '../platform/outbox.ts';
import type { NewOrder, Order, OrderEvent, OrderItem, OrderStatus } from './order.ts';

type OrderRow = {
  id: string;
  user_id: string;
  status: OrderStatus;
  total: string;
  failure_reason: string | null;
  payment_token: string;
  payment_reference: string;
  charge_attempted: boolean;
  charge_id: string | null;
  cancel_reason: string | null;
  created_at: Date;
  updated_at: Date;
  version: number;
  items: { product_id: number; quantity: number; unit_price: string }[] | null;
};

function toOrder(row: OrderRow): Order {
  return {
    id: Number(row.id),
    userId: Number(row.user_id),
    status: row.status,
    items: (row.items ?? []).map(
      (item): OrderItem => ({
        productId: item.product_id,
        quantity: item.quantity,
        unitPrice: item.unit_price,
      }),
    ),
    total: row.total,
    failureReason: row.failure_reason,
    paymentToken: row.payment_token,
    paymentReference: row.payment_reference,
    chargeAttempted: row.charge_attempted,
    chargeId: row.charge_id,
    cancelReason: row.cancel_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
  };
}

const COLUMNS = `m.id, m.user_id, m.status, m.total::text AS total, m.failure_reason, m.payment_token,
  m.payment_reference, m.charge_attempted_at IS NOT NULL AS charge_attempted, m.charge_id,
  m.cancel_reason, m.created_at, m.updated_at, m.version`;

const itemsOf = (source: string) => `(SELECT json_agg(json_build_object('product_id', i.product_id,
  'quantity', i.quantity, 'unit_price', i.unit_price::text) ORDER BY i.position) FROM ${source})`;
const STORED_ITEMS = itemsOf('order_items i WHERE i.order_id = m.id');

const ORDER_EVENTS: Outbox = { table: 'order_events', subjectColumn: 'order_id', lockKey: 7_235_023 };
const orderJson = (items: string) => `json_build_object('id', m.id, 'user_id', m.user_id,
  'status', m.status, 'items', ${items}, 'total', m.total::text, 'failure_reason', m.failure_reason,
  'created_at', m.created_at, 'updated_at', m.updated_at, 'version', m.version)`;

// The unit prices are the products' at this moment (src/products' productPrices); the total
// is summed in NUMERIC, exactly.
const INSERT = `
  WITH w AS (
    SELECT * FROM unnest($3::bigint[], $4::integer[], $5::numeric[]) WITH ORDINALITY
      AS w(product_id, quantity, unit_price, position)
  ), m AS (
    INSERT INTO orders (user_id, payment_token, total)
    VALUES ($1, $2, (SELECT sum(w.quantity * w.unit_price) FROM w))
    RETURNING *
  ), i AS (
    INSERT INTO order_items (order_id, position, product_id, quantity, unit_price)
    SELECT m.id, w.position, w.product_id, w.quantity, w.unit_price FROM m, w
    RETURNING *
  ), h AS (
    INSERT INTO order_history (order_id, status, detail) SELECT m.id, m.status, 'order placed' FROM m
  ),${recordEvents(ORDER_EVENTS, 'order.created', orderJson(itemsOf('i')), '$6')}
  SELECT ${COLUMNS}, ${itemsOf('i')} AS items FROM m`;

const SELECT_BY_ID = `SELECT ${COLUMNS}, ${STORED_ITEMS} AS items FROM orders m WHERE m.id = $1`;

// $3 null: every owner's (an admin's list); $4 null: every status.
const SELECT_PAGE = `
  WITH page AS (
    SELECT ${COLUMNS}, ${STORED_ITEMS} AS items FROM orders m
    WHERE ($3::bigint IS NULL OR m.user_id = $3) AND ($4::text IS NULL OR m.status = $4)
    ORDER BY m.created_at DESC, m.id DESC LIMIT $1 OFFSET $2
  )
  SELECT (SELECT count(*) FROM orders
          WHERE ($3::bigint IS NULL OR user_id = $3) AND ($4::text IS NULL OR status = $4)) AS total_count,
         page.*
  FROM (VALUES (1)) AS one
  LEFT JOIN page ON true`;

const SELECT_HISTORY = 'SELECT status, at, detail FROM order_history WHERE order_id = $1 ORDER BY id';

const TRANSITION = `
  WITH m AS (
    UPDATE orders
    SET status = $3, failure_reason = COALESCE($4, failure_reason), charge_id = COALESCE($5, charge_id),
        updated_at = now(), version = version + 1
    WHERE id = $1 AND status = $2 AND (NOT $7 OR cancel_requested_at IS NULL)
      AND (NOT $8 OR charge_attempted_at IS NULL)
      AND ${lockSubject(ORDER_EVENTS, '$1')}
    RETURNING *
  ), h AS (
    INSERT INTO order_history (order_id, status, detail) SELECT m.id, m.status, $6 FROM m
  ),${recordEvents(ORDER_EVENTS, 'order.updated', orderJson(STORED_ITEMS), '$9')}
  SELECT ${COLUMNS}, ${STORED_ITEMS} AS items FROM m`;

// Committed before the provider is first asked, so a later compensation knows a charge may
// exist; says whether an earlier attempt had been marked.
const MARK_CHARGE_ATTEMPTED = `
  UPDATE orders o SET charge_attempted_at = COALESCE(o.charge_attempted_at, now())
  FROM (SELECT id, charge_attempted_at FROM orders WHERE id = $1 FOR UPDATE) before
  WHERE o.id = before.id AND o.status = 'reserved'
  RETURNING before.charge_attempted_at IS NOT NULL AS earlier`;

// A first attempt that provably never reached the provider: no charge can exist.
const UNMARK_CHARGE_ATTEMPTED = `
  UPDATE orders SET charge_attempted_at = NULL
  WHERE id = $1 AND status = 'reserved' AND charge_id IS NULL`;

// The owner's (or, $3, anyone's) order still in flight is marked; a second ask changes nothing.
const REQUEST_CANCEL = `
  WITH m AS (
    UPDATE orders SET cancel_requested_at = COALESCE(cancel_requested_at, now()),
                      cancel_reason = COALESCE(cancel_reason, $4)
    WHERE id = $1 AND (user_id = $2 OR $3) AND status IN ('pending', 'reserved', 'paid')
    RETURNING *
  )
  SELECT ${COLUMNS}, ${STORED_ITEMS} AS items FROM m`;

// Orders in flight for longer than $1 milliseconds get a cancel asked for; every order of the
// sweep, marked now or before, is returned so its current step can be enqueued again.
const EXPIRE_STALE = `
  UPDATE orders SET cancel_requested_at = COALESCE(cancel_requested_at, now()),
                    cancel_reason = COALESCE(cancel_reason, 'timed out')
  WHERE status IN ('pending', 'reserved', 'paid') AND created_at < now() - $1 * interval '1 millisecond'
  RETURNING id, status`;

const SELECT_OPEN = `SELECT id, status FROM orders WHERE status IN ('pending', 'reserved', 'paid') ORDER BY id`;

export async function insertOrder(
  db: Queryable,
  userId: number,
  order: NewOrder,
  prices: ReadonlyMap<number, string>,
): Promise<Order> {
  const { rows } = await db.query<OrderRow>({
    name: 'insert-order',
    text: INSERT,
    values: [
      userId,
      order.paymentToken,
      order.lines.map((line) => line.productId),
      order.lines.map((line) => line.quantity),
      order.lines.map((line) => prices.get(line.productId)),
      eventTraceContext(),
    ],
  });
  return toOrder(rows[0] as OrderRow);
}

export async function selectOrder(db: Queryable, id: string | number): Promise<Order | undefined> {
  const { rows } = await db.query<OrderRow>({ name: 'select-order', text: SELECT_BY_ID, values: [id] });
  return rows[0] && toOrder(rows[0]);
}

export async function selectOrderPage(
  db: Queryable,
  filter: { userId: number | null; status: OrderStatus | null; limit: number; offset: bigint },
): Promise<{ orders: Order[]; total: number }> {
  const { rows } = await db.query<OrderRow & { total_count: string }>({
    name: 'select-order-page',
    text: SELECT_PAGE,
    values: [filter.limit, filter.offset.toString(), filter.userId, filter.status],
  });
  const orders = rows.filter((row) => row.id !== null).map(toOrder);
  return { orders, total: Number((rows[0] as { total_count: string }).total_count) };
}

export async function selectHistory(db: Queryable, id: number): Promise<OrderEvent[]> {
  const { rows } = await db.query<OrderEvent>({
    name: 'select-order-history',
    text: SELECT_HISTORY,
    values: [id],
  });
  return rows;
}

// `forward`: a step of the workflow going on, which a cancel asked for in the meantime stops
// (the step then compensates instead).
// `uncharged`: only while no charge was attempted (a compensation that found none to refund
// must not race a charge step beginning).
export type TransitionFields = {
  detail: string;
  failureReason?: string;
  chargeId?: string;
  forward: boolean;
  uncharged?: boolean;
};

// undefined: the order was not `from` any more (another step, or a duplicate of this one, won),
// or, going forward, a cancel was asked for.
export async function transition(
  db: Queryable,
  id: number,
  from: OrderStatus,
  to: OrderStatus,
  fields: TransitionFields,
): Promise<Order | undefined> {
  const { rows } = await db.query<OrderRow>({
    name: 'order-transition',
    text: TRANSITION,
    values: [
      id,
      from,
      to,
      fields.failureReason ?? null,
      fields.chargeId ?? null,
      fields.detail,
      fields.forward,
      fields.uncharged ?? false,
      eventTraceContext(),
    ],
  });
  return rows[0] && toOrder(rows[0]);
}

// 'first' or 'again' (an earlier attempt was marked), or undefined when the order is no
// longer reserved.
export async function markChargeAttempted(db: Queryable, id: number): Promise<'first' | 'again' | undefined> {
  const { rows } = await db.query<{ earlier: boolean }>({
    name: 'mark-charge-attempted',
    text: MARK_CHARGE_ATTEMPTED,
    values: [id],
  });
  const row = rows[0];
  return row && (row.earlier ? 'again' : 'first');
}

export async function unmarkChargeAttempted(db: Queryable, id: number): Promise<void> {
  await db.query({ name: 'unmark-charge-attempted', text: UNMARK_CHARGE_ATTEMPTED, values: [id] });
}

export async function requestCancel(
  db: Queryable,
  id: string,
  requester: { userId: number; admin: boolean },
  reason: string,
): Promise<Order | undefined> {
  const { rows } = await db.query<OrderRow>({
    name: 'request-order-cancel',
    text: REQUEST_CANCEL,
    values: [id, requester.userId, requester.admin, reason],
  });
  return rows[0] && toOrder(rows[0]);
}

export type OpenOrder = { id: number; status: OrderStatus };

export async function expireStaleOrders(db: Queryable, timeoutMs: number): Promise<OpenOrder[]> {
  const { rows } = await db.query<{ id: string; status: OrderStatus }>(EXPIRE_STALE, [timeoutMs]);
  return rows.map((row) => ({ id: Number(row.id), status: row.status }));
}

export async function selectOpenOrders(db: Queryable): Promise<OpenOrder[]> {
  const { rows } = await db.query<{ id: string; status: OrderStatus }>(SELECT_OPEN);
  return rows.map((row) => ({ id: Number(row.id), status: row.status }));
}
