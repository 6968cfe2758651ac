// The order type, its state machine, its request and response shapes and its rules, with the
// messages of seed 002's API ("validation: ...", "not_found: ...", "conflict: ..."). The
// limits are written once here: the schemas' descriptions and the validator read them.
import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';
import { BadRequestError } from '../platform/errors.ts';
import { plainReader, withReader } from '../platform/request.ts';
import { checkNoNul, RuleViolationError } from '../products/product.ts';

export const ORDER_STATUSES = ['pending', 'reserved', 'paid', 'confirmed', 'rejected', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];
export const TERMINAL_STATUSES: readonly OrderStatus[] = ['confirmed', 'rejected', 'cancelled'];

export const isTerminal = (status: OrderStatus): boolean => TERMINAL_STATUSES.includes(status);

export type OrderItem = Readonly<{ productId: number; quantity: number; unitPrice: string }>;

export type Order = Readonly<{
  id: number;
  userId: number;
  status: OrderStatus;
  items: readonly OrderItem[];
  // NUMERIC text, as PostgreSQL writes it ("299.98")
  total: string;
  failureReason: string | null;
  paymentToken: string;
  // what the provider knows the order's payment calls by: the reference, and the root of their
  // idempotency keys (random, so that no other database's order can have it)
  paymentReference: string;
  chargeAttempted: boolean;
  chargeId: string | null;
  // set once a cancel was asked for (by the owner, an admin or the timeout sweep)
  cancelReason: string | null;
  createdAt: Date;
  updatedAt: Date;
  version: number;
}>;

export const ORDER_LIMITS = {
  items: { min: 1, max: 50 },
  quantity: { min: 1, max: 1000 },
  token: 255,
  // The most an order may total: what orders.total (NUMERIC(14,2)) holds. Lines within the
  // other limits can add up to more (50 × 1000 × a price below 10^8), which the database would
  // refuse as an overflow; the payment provider takes it in cents, well below 2^53.
  total: '999999999999.99',
} as const;

const OrderLine = Type.Object(
  {
    product_id: Type.Integer({ description: 'a product of GET /api/v1/products', examples: [1] }),
    quantity: Type.Integer({
      description: `${ORDER_LIMITS.quantity.min}-${ORDER_LIMITS.quantity.max}`,
      examples: [2],
    }),
  },
  { additionalProperties: false },
);

const PlaceOrderShape = Type.Object(
  {
    items: Type.Array(OrderLine, {
      description: `${ORDER_LIMITS.items.min}-${ORDER_LIMITS.items.max} lines, each product once`,
    }),
    payment_token: Type.String({
      description: `the payment source the provider charges (1-${ORDER_LIMITS.token} characters)`,
      examples: ['tok_visa'],
    }),
  },
  {
    additionalProperties: false,
    examples: [{ items: [{ product_id: 1, quantity: 2 }], payment_token: 'tok_visa' }],
  },
);

// Shapes and JSON types answer 400; the rules (validateNewOrder) 422.
export const PlaceOrderRequest = withReader(
  PlaceOrderShape,
  plainReader(PlaceOrderShape, {
    notObject: 'body must be a JSON object',
    missing: {
      items: () => new RuleViolationError('validation: items are required'),
      payment_token: () => new RuleViolationError('validation: payment_token is required'),
    },
    invalid: {
      items: 'items must be an array of {"product_id": integer, "quantity": integer}',
      payment_token: 'payment_token must be a string',
    },
  }),
);
export type PlaceOrderInput = Static<typeof PlaceOrderShape>;

export type NewOrder = Readonly<{
  lines: readonly Readonly<{ productId: number; quantity: number }>[];
  paymentToken: string;
}>;

// The business rules of a new order, in the order a client fixes them. Each failure names the
// field to blame by its path in the request ("items[0].quantity").
export function validateNewOrder(input: PlaceOrderInput): NewOrder {
  const { items, payment_token: token } = input;
  const { min, max } = ORDER_LIMITS.items;
  if (items.length < min)
    throw new RuleViolationError('validation: an order needs at least one item', 'items');
  if (items.length > max)
    throw new RuleViolationError(`validation: an order has at most ${max} items`, 'items');
  const seen = new Set<number>();
  for (const [index, item] of items.entries()) {
    const path = `items[${index}]`;
    if (item.product_id < 1 || !Number.isSafeInteger(item.product_id))
      throw new RuleViolationError('validation: product_id must be a positive integer', `${path}.product_id`);
    if (item.quantity < ORDER_LIMITS.quantity.min || item.quantity > ORDER_LIMITS.quantity.max)
      throw new RuleViolationError(
        `validation: quantity must be between ${ORDER_LIMITS.quantity.min} and ${ORDER_LIMITS.quantity.max}`,
        `${path}.quantity`,
      );
    if (seen.has(item.product_id))
      throw new RuleViolationError(
        `validation: product ${item.product_id} appears more than once`,
        `${path}.product_id`,
      );
    seen.add(item.product_id);
  }
  checkNoNul({ payment_token: token });
  if (token.trim() === '')
    throw new RuleViolationError('validation: payment_token is required', 'payment_token');
  if (token.length > ORDER_LIMITS.token)
    throw new RuleViolationError(
      `validation: payment_token must not be more than ${ORDER_LIMITS.token} characters`,
      'payment_token',
    );
  return {
    lines: items.map((item) => ({ productId: item.product_id, quantity: item.quantity })),
    paymentToken: token,
  };
}

// The rule on a new order's total, once its prices are known (NUMERIC text by product id):
// at most ORDER_LIMITS.total (422). In cents every sum within the other limits (under 5·10^14)
// is an exact number.
export function checkOrderTotal(order: NewOrder, prices: ReadonlyMap<number, string>): void {
  const total = order.lines.reduce(
    (sum, line) => sum + cents(prices.get(line.productId) ?? '0') * line.quantity,
    0,
  );
  if (total > cents(ORDER_LIMITS.total))
    throw new RuleViolationError(
      `validation: the order total must not be more than ${ORDER_LIMITS.total}`,
      'items',
    );
}

// The Idempotency-Key header: 1-255 visible ASCII characters.
export const IdempotencyKey = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[!-~]+$',
  description: 'the same key and body within 24 h answer the first answer again (Idempotent-Replayed: true)',
});

export function checkIdempotencyKey(key: string): string {
  if (!Value.Check(IdempotencyKey, key))
    throw new BadRequestError('invalid Idempotency-Key header: it must be 1-255 visible ASCII characters');
  return key;
}

export class OrderNotFoundError extends Error {
  constructor(id: string) {
    super(`not_found: order with id ${id} does not exist`);
  }
}

// A request the order's state or an idempotency key refuses (409).
export class OrderConflictError extends Error {}

// A placement whose idempotency key another placement, not yet committed, holds: unlike a
// conflict with the order's state, the same request succeeds when retried (gRPC's ABORTED).
export class IdempotencyKeyBusyError extends OrderConflictError {
  constructor() {
    super('conflict: a request with this idempotency key is still in progress');
  }
}

export const StatusSchema = Type.Unsafe<OrderStatus>(Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s))));

export const OrderSchema = Type.Object(
  {
    id: Type.Integer(),
    user_id: Type.Integer(),
    status: StatusSchema,
    items: Type.Array(
      Type.Object(
        {
          product_id: Type.Integer(),
          quantity: Type.Integer(),
          unit_price: Type.Number({ description: 'the price when the order was placed', examples: [149.99] }),
        },
        { additionalProperties: false },
      ),
    ),
    total: Type.Number({ examples: [299.98] }),
    failure_reason: Type.Union([Type.String(), Type.Null()], {
      description: 'why the order was rejected or cancelled',
    }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
    version: Type.Integer(),
  },
  { additionalProperties: false },
);
export type OrderJson = Static<typeof OrderSchema>;

export const OrderEnvelope = Type.Object({ order: OrderSchema }, { additionalProperties: false });
export type OrderEnvelopeJson = Static<typeof OrderEnvelope>;

export const OrderEventsSchema = Type.Object(
  {
    events: Type.Array(
      Type.Object(
        {
          status: StatusSchema,
          at: Type.String({ format: 'date-time' }),
          detail: Type.String(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type OrderEvent = Readonly<{ status: OrderStatus; at: Date; detail: string }>;

// Prices and totals as the products API writes prices: JSON numbers.
export function toOrderJson(order: Order): OrderJson {
  return {
    id: order.id,
    user_id: order.userId,
    status: order.status,
    items: order.items.map((item) => ({
      product_id: item.productId,
      quantity: item.quantity,
      unit_price: Number(item.unitPrice),
    })),
    total: Number(order.total),
    failure_reason: order.failureReason,
    created_at: order.createdAt.toISOString(),
    updated_at: order.updatedAt.toISOString(),
    version: order.version,
  };
}

// NUMERIC(…, 2) text as integer cents, for the payment provider ("299.98" → 29998).
export function cents(amount: string): number {
  const [whole = '0', fraction = ''] = amount.split('.');
  return Number(whole) * 100 + Number(fraction.padEnd(2, '0').slice(0, 2));
}

export const parseStatus = (raw: string): OrderStatus | undefined =>
  (ORDER_STATUSES as readonly string[]).includes(raw) ? (raw as OrderStatus) : undefined;

// A list's status filter: empty is any status; an unknown one is a bad request.
export function statusFilter(raw: string): OrderStatus | null {
  if (raw === '') return null;
  const status = parseStatus(raw);
  if (status === undefined)
    throw new BadRequestError(`invalid status: must be one of ${ORDER_STATUSES.join(', ')}`);
  return status;
}
