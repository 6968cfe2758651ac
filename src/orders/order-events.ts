// The orders outbox (order_events, written by orders.sql.ts in the statement of each status
// change) as other modules consume it: the order an event shows, and the observers woken after
// a change of orders commits (the change streams publish their wake-up from there).
import type { Db } from '../platform/db.ts';
import { changeObservers } from '../platform/observers.ts';
import { type OrderJson, type OrderStatus, toOrderJson } from './order.ts';

// The channel the change streams' wake-ups of orders are sent on (src/realtime/wakeups.ts).
export const ORDER_EVENTS_CHANNEL = 'order_events';

const orderChanges = changeObservers<void>();
export const observeOrderChanges = orderChanges.observe;
// Called after an order's creation or status change has committed.
export const ordersChanged = (db: Db): Promise<void> => orderChanges.changed(db);

type EventPayload = {
  id: number;
  user_id: number;
  status: OrderStatus;
  items: { product_id: number; quantity: number; unit_price: string }[] | null;
  total: string;
  failure_reason: string | null;
  created_at: string;
  updated_at: string;
  version: number;
};

// The order as GET /api/v1/orders/{id} shows it, from an event's payload (orders.sql.ts's
// orderJson: the public columns, prices as NUMERIC text). The payload holds none of the
// workflow's own fields, which toOrderJson never shows either.
export function orderOfEventPayload(payload: Record<string, unknown>): OrderJson {
  const row = payload as unknown as EventPayload;
  return toOrderJson({
    id: Number(row.id),
    userId: Number(row.user_id),
    status: row.status,
    items: (row.items ?? []).map((item) => ({
      productId: item.product_id,
      quantity: item.quantity,
      unitPrice: item.unit_price,
    })),
    total: row.total,
    failureReason: row.failure_reason,
    paymentToken: '',
    paymentReference: '',
    chargeAttempted: false,
    chargeId: null,
    cancelReason: null,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    version: row.version,
  });
}
