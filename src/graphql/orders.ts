// Orders in GraphQL: the orders API's scope checks (requireScope) and the very use cases of
// /api/v1/orders (src/orders/orders.ts), so the permission rules (owner or admin, anyone else
// NOT_FOUND), the validation and the idempotency keys answer as they do over REST, with the same
// messages through the one error table.
import { parseInt64Id, requester, requireScope } from '../api-v1/products.routes.ts';
import {
  ORDER_LIMITS,
  ORDER_STATUSES,
  type OrderEvent,
  type OrderJson,
  type OrderStatus,
  toOrderJson,
} from '../orders/order.ts';
import * as orders from '../orders/orders.ts';
import { PRODUCT_LIMIT, PRODUCT_PAGE } from '../products/product.ts';
import { pageArgument } from './cost.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';

const canRead = requireScope('orders:read');
const canWrite = requireScope('orders:write');

const id = (raw: string) => parseInt64Id(raw, 'invalid order id');

type PageArgs = { status?: OrderStatus | null; page?: number | null; limit?: number | null };
type PlaceArgs = {
  idempotencyKey?: string | null;
  input: { items: { productId: number; quantity: number }[]; paymentToken: string };
};

const PAGE_DEFAULT = 20;
const PAGING = `page below ${PRODUCT_PAGE.minimum} is ${PRODUCT_PAGE.default}; limit outside ${PRODUCT_LIMIT.minimum}-${PRODUCT_LIMIT.maximum} is ${PRODUCT_LIMIT.default}`;

// The workflow's first step is enqueued with the order, so placing one needs the job queue.
function ordersDepsOf(context: GraphqlContext): orders.OrdersDeps {
  if (!context.orders) throw new Error('GraphQL was started without the job queue: orders cannot be placed');
  return { db: context.db, ...context.orders };
}

// The order as REST shows it (toOrderJson), with GraphQL's names.
function presentOrder(json: OrderJson) {
  return {
    id: json.id,
    userId: json.user_id,
    status: json.status,
    items: json.items.map((item) => ({
      productId: item.product_id,
      quantity: item.quantity,
      unitPrice: item.unit_price,
    })),
    total: json.total,
    failureReason: json.failure_reason,
    createdAt: json.created_at,
    updatedAt: json.updated_at,
    version: json.version,
  };
}

export const ordersModule: GraphqlModule = {
  typeDefs: /* GraphQL */ `
    extend type Query {
      "Needs orders:read. The caller's order (any, for an admin); NOT_FOUND otherwise."
      order(id: ID!): Order!
      "Needs orders:read. The caller's orders (everyone's, for an admin), newest first; ${PAGING}, as on GET /api/v1/orders."
      orders(status: OrderStatus, page: Int, limit: Int): OrderPage!
      "Needs orders:read. Every status the order went through, oldest first (GET /api/v1/orders/{id}/events)."
      orderEvents(id: ID!): [OrderEvent!]!
    }

    extend type Mutation {
      "Needs orders:write. As POST /api/v1/orders with an Idempotency-Key: the same key and input within 24 h answer the first order again (replayed: true); another input VALIDATION; while the first is still being answered EDIT_CONFLICT."
      placeOrder(idempotencyKey: String, input: PlaceOrderInput!): OrderPlacement!
      "Needs orders:write. Asks for a cancel; compensations follow. A terminal order is EDIT_CONFLICT."
      cancelOrder(id: ID!): Order!
    }

    enum OrderStatus {
      ${ORDER_STATUSES.join('\n      ')}
    }

    type Order {
      id: ID!
      userId: ID!
      status: OrderStatus!
      items: [OrderItem!]!
      total: Float!
      "why the order was rejected or cancelled"
      failureReason: String
      createdAt: String!
      updatedAt: String!
      version: Int!
    }

    type OrderItem {
      productId: Int!
      quantity: Int!
      "the price when the order was placed"
      unitPrice: Float!
    }

    type OrderPage {
      data: [Order!]!
      total: Int!
      page: Int!
      limit: Int!
    }

    type OrderEvent {
      status: OrderStatus!
      at: String!
      detail: String!
    }

    type OrderPlacement {
      order: Order!
      "true when this is the stored first answer to the idempotency key"
      replayed: Boolean!
    }

    input PlaceOrderInput {
      "1-50 lines, each product once"
      items: [OrderItemInput!]!
      paymentToken: String!
    }

    input OrderItemInput {
      productId: Int!
      "1-1000"
      quantity: Int!
    }
  `,
  resolvers: {
    Query: {
      order: async (_: unknown, args: { id: string }, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        return presentOrder(
          toOrderJson(await orders.getOrder(context.db, requester(context.httpRequest), id(args.id))),
        );
      },
      orders: async (_: unknown, args: PageArgs, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        const page = await orders.listOrders(context.db, requester(context.httpRequest), {
          status: args.status ?? null,
          page: BigInt(args.page ?? 1),
          limit: BigInt(args.limit ?? PAGE_DEFAULT),
        });
        return {
          ...page,
          data: page.data.map((order) => presentOrder(toOrderJson(order))),
          page: Number(page.page),
        };
      },
      orderEvents: async (_: unknown, args: { id: string }, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        const events = await orders.orderEvents(context.db, requester(context.httpRequest), id(args.id));
        return events.map((event: OrderEvent) => ({ ...event, at: event.at.toISOString() }));
      },
    },
    Mutation: {
      placeOrder: async (_: unknown, args: PlaceArgs, context: GraphqlContext) => {
        await canWrite(context.httpRequest);
        const placement = await orders.placeOrder(
          ordersDepsOf(context),
          requester(context.httpRequest),
          {
            items: args.input.items.map((item) => ({ product_id: item.productId, quantity: item.quantity })),
            payment_token: args.input.paymentToken,
          },
          args.idempotencyKey ?? undefined,
        );
        // The answer REST gives (a replay: the first one), not the order as it is now.
        return { order: presentOrder(placement.body.order), replayed: placement.replayed };
      },
      cancelOrder: async (_: unknown, args: { id: string }, context: GraphqlContext) => {
        await canWrite(context.httpRequest);
        return presentOrder(
          toOrderJson(await orders.cancelOrder(context.db, requester(context.httpRequest), id(args.id))),
        );
      },
    },
  },
  listSizes: {
    'Query.orders': (field) => ({ size: 1, pass: pageArgument(field, 'limit', PAGE_DEFAULT) }),
    'OrderPage.data': (_, inherited) => ({ size: inherited }),
    'Order.items': () => ({ size: ORDER_LIMITS.items.max }),
    // one entry a status the order entered, and no status is entered twice
    'Query.orderEvents': () => ({ size: ORDER_STATUSES.length }),
  },
};
