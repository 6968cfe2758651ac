// greenlight.v1.OrdersService: the /api/v1/orders routes' scope checks and use cases, called as
// they are; messages are the orders API's JSON, typed (orders.proto). The idempotency key
// travels as the `idempotency-key` request metadata, a replay is told by the
// `idempotent-replayed: true` response metadata, as REST's headers.
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { OrdersService, PlaceOrderRequest } from '../../gen/greenlight/v1/orders_pb.ts';
import type { Identity } from '../accounts/user.ts';
import { parseInt64Id, requesterOf, scopeRefusal } from '../api-v1/products.routes.ts';
import { type OrderJson, type PlaceOrderInput, statusFilter, toOrderJson } from '../orders/order.ts';
import type { OrderMetrics } from '../orders/orders.metrics.ts';
import * as orders from '../orders/orders.ts';
import type { Db } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import { ORDERS } from '../realtime/topics.ts';
import { callDb, callerOf } from './calls.ts';
import { type WatchDeps, watchTopic } from './watch.ts';

export type OrdersServiceDeps = Readonly<{ db: Db; jobs: Jobs; metrics: OrderMetrics; watch: WatchDeps }>;

function allow(context: HandlerContext, scope: 'orders:read' | 'orders:write'): orders.Requester {
  const identity = callerOf(context);
  const refused = scopeRefusal(identity, scope);
  if (refused) throw refused;
  return requesterOf(identity as Identity);
}

// The order as GET /api/v1/orders/{id} shows it; REST's null failure_reason is absent.
export function protoOrder(json: OrderJson) {
  return {
    id: BigInt(json.id),
    userId: BigInt(json.user_id),
    status: json.status,
    items: json.items.map((item) => ({
      productId: BigInt(item.product_id),
      quantity: item.quantity,
      unitPrice: item.unit_price,
    })),
    total: json.total,
    failureReason: json.failure_reason ?? undefined,
    createdAt: json.created_at,
    updatedAt: json.updated_at,
    version: json.version,
  };
}

// The request as POST /api/v1/orders's body, so the same rules give the same messages. An id
// beyond JavaScript's safe integers stays one, which the rules refuse as REST's JSON would.
function given(request: PlaceOrderRequest): PlaceOrderInput {
  return {
    items: request.items.map((item) => ({ product_id: Number(item.productId), quantity: item.quantity })),
    payment_token: request.paymentToken,
  };
}

const orderId = (id: bigint) => parseInt64Id(String(id), 'invalid order id');

export function ordersService({
  db,
  jobs,
  metrics,
  watch,
}: OrdersServiceDeps): ServiceImpl<typeof OrdersService> {
  return {
    async placeOrder(request, context) {
      const requester = allow(context, 'orders:write');
      const key = context.requestHeader.get('idempotency-key') ?? undefined;
      const deps = { db: callDb(db, context), jobs, metrics };
      const placed = await orders.placeOrder(deps, requester, given(request), key);
      if (placed.replayed) context.responseHeader.set('idempotent-replayed', 'true');
      return { order: protoOrder(placed.body.order) };
    },
    async getOrder(request, context) {
      const requester = allow(context, 'orders:read');
      const order = await orders.getOrder(callDb(db, context), requester, orderId(request.id));
      return { order: protoOrder(toOrderJson(order)) };
    },
    async listOrders(request, context) {
      const requester = allow(context, 'orders:read');
      const page = await orders.listOrders(callDb(db, context), requester, {
        status: statusFilter(request.status),
        page: request.page,
        limit: request.limit,
      });
      return {
        data: page.data.map((order) => protoOrder(toOrderJson(order))),
        total: BigInt(page.total),
        page: page.page,
        limit: page.limit,
      };
    },
    async listOrderEvents(request, context) {
      const requester = allow(context, 'orders:read');
      const events = await orders.orderEvents(callDb(db, context), requester, orderId(request.id));
      return {
        events: events.map((event) => ({
          status: event.status,
          at: event.at.toISOString(),
          detail: event.detail,
        })),
      };
    },
    async cancelOrder(request, context) {
      const requester = allow(context, 'orders:write');
      const order = await orders.cancelOrder(callDb(db, context), requester, orderId(request.id));
      return { order: protoOrder(toOrderJson(order)) };
    },
    // Each event reaches only the order's owner and admins: the topic's visibility, applied
    // by the stream's machinery as for SSE and the WebSocket.
    async *watchOrderChanges(request, context) {
      allow(context, 'orders:read');
      for await (const { event, data } of watchTopic(watch, ORDERS, request.afterEventId, context)) {
        yield { event, order: data && protoOrder(data as OrderJson) };
      }
    },
  };
}
