// /api/v1/orders: place (with an Idempotency-Key), read, list, history and cancel, behind any
// enabled credential (API keys need orders:read / orders:write). The rules are the use cases'
// (src/orders/orders.ts); these handlers only read the request and write the answer.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import {
  IdempotencyKey,
  OrderEnvelope,
  OrderEventsSchema,
  OrderSchema,
  type PlaceOrderInput,
  PlaceOrderRequest,
  StatusSchema,
  statusFilter,
  toOrderJson,
} from '../orders/order.ts';
import type { OrderMetrics } from '../orders/orders.metrics.ts';
import * as orders from '../orders/orders.ts';
import type { Db } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import { first, paramsOf, parseInt64, queryOf, withPartReader } from '../platform/request.ts';
import { BEARER_REQUIRED, response } from '../platform/schemas.ts';
import { PRODUCT_LIMIT, PRODUCT_PAGE } from '../products/product.ts';
import { int64Params, requester, requireScope } from './products.routes.ts';
import { apiErrors } from './responses.ts';

export type OrderRouteDeps = Readonly<{ db: Db; jobs: Jobs; metrics?: OrderMetrics }>;

const OrderIdParams = int64Params('invalid order id');

const OrderListQuery = withPartReader(
  Type.Object({
    status: Type.Optional(StatusSchema),
    page: Type.Optional(Type.Integer({ ...PRODUCT_PAGE, description: 'as GET /api/v1/products reads it' })),
    limit: Type.Optional(Type.Integer({ ...PRODUCT_LIMIT, description: 'as GET /api/v1/products reads it' })),
  }),
  (query) => ({
    status: statusFilter(first(query.status) ?? ''),
    page: parseInt64(first(query.page) ?? '') ?? 0n,
    limit: parseInt64(first(query.limit) ?? '') ?? 0n,
  }),
);

const OrderPage = Type.Object(
  { data: Type.Array(OrderSchema), total: Type.Integer(), page: Type.Integer(), limit: Type.Integer() },
  { additionalProperties: false },
);

const PlaceHeaders = Type.Object({ 'idempotency-key': Type.Optional(IdempotencyKey) });

const ROUTE = { tags: ['orders'], security: BEARER_REQUIRED };
const LOCATION = { Location: { type: 'string', description: '/api/v1/orders/{id}', required: true } };
const REPLAYED = {
  ...LOCATION,
  'Idempotent-Replayed': {
    type: 'string',
    description: '"true" when this is the stored first answer to the key',
  },
};

const read = requireScope('orders:read');
const write = requireScope('orders:write');
const idOf = (request: FastifyRequest) => paramsOf(request, OrderIdParams).id;

export function orderRoutes(api: FastifyInstance, deps: OrderRouteDeps): void {
  orderCollectionRoutes(api, deps);
  orderByIdRoutes(api, deps.db);
}

function orderCollectionRoutes(api: FastifyInstance, deps: OrderRouteDeps): void {
  api.post(
    '/orders',
    {
      onRequest: write,
      schema: {
        ...ROUTE,
        operationId: 'placeOrder',
        summary: 'Place an order; the workflow reserves stock, charges and confirms it (orders:write)',
        headers: PlaceHeaders,
        body: PlaceOrderRequest,
        response: {
          202: response(OrderEnvelope, 'Accepted: the order, pending', REPLAYED),
          ...apiErrors(400, 401, 403, 409, 413, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const key = first(request.headers['idempotency-key']);
      const placed = await orders.placeOrder(deps, requester(request), request.body as PlaceOrderInput, key);
      reply.code(placed.status as 202).header('location', `/api/v1/orders/${placed.body.order.id}`);
      if (placed.replayed) reply.header('idempotent-replayed', 'true');
      return placed.body;
    },
  );

  api.get(
    '/orders',
    {
      onRequest: read,
      schema: {
        ...ROUTE,
        operationId: 'listOrders',
        summary: "A page of the caller's orders, an admin's: everyone's (orders:read)",
        querystring: OrderListQuery,
        response: {
          200: response(OrderPage, 'A page of orders, newest first'),
          ...apiErrors(400, 401, 403, 500),
        },
      },
    },
    async (request) => {
      const page = await orders.listOrders(deps.db, requester(request), queryOf(request, OrderListQuery));
      return {
        data: page.data.map(toOrderJson),
        total: page.total,
        page: Number(page.page),
        limit: page.limit,
      };
    },
  );
}

function orderByIdRoutes(api: FastifyInstance, db: Db): void {
  const byId = (operationId: string, summary: string) => ({
    ...ROUTE,
    operationId,
    summary,
    params: OrderIdParams,
  });

  api.get(
    '/orders/:id',
    {
      onRequest: read,
      schema: {
        ...byId('getOrder', 'Read one order; owner or admin only (orders:read)'),
        response: { 200: response(OrderEnvelope, 'The order'), ...apiErrors(400, 401, 403, 404, 500) },
      },
    },
    async (request) => ({ order: toOrderJson(await orders.getOrder(db, requester(request), idOf(request))) }),
  );

  api.get(
    '/orders/:id/events',
    {
      onRequest: read,
      schema: {
        ...byId('listOrderEvents', 'The statuses the order went through, oldest first (orders:read)'),
        response: { 200: response(OrderEventsSchema, 'The history'), ...apiErrors(400, 401, 403, 404, 500) },
      },
    },
    async (request) => {
      const events = await orders.orderEvents(db, requester(request), idOf(request));
      return { events: events.map((e) => ({ status: e.status, at: e.at.toISOString(), detail: e.detail })) };
    },
  );

  api.post(
    '/orders/:id/cancel',
    {
      onRequest: write,
      schema: {
        ...byId('cancelOrder', 'Ask for the order to be cancelled; compensations follow (orders:write)'),
        response: {
          202: response(OrderEnvelope, 'Accepted: the order, cancelled once its compensations are done'),
          ...apiErrors(400, 401, 403, 404, 409, 500),
        },
      },
    },
    async (request, reply) => {
      const order = await orders.cancelOrder(db, requester(request), idOf(request));
      reply.code(202);
      return { order: toOrderJson(order) };
    },
  );
}
