// The product type, its request shapes and seed 002's rules, with its messages. Beyond the
// seed: prices are NUMERIC(10,2), so more than two decimals or 10^8 and above are refused
// rather than rounded; stock must fit PostgreSQL's integer; text must not hold NUL, which
// PostgreSQL cannot store, and has a length limit (PRODUCT_TEXT).
import { type Static, Type } from 'typebox';
import { goStruct } from '../platform/go-json.ts';
import { INT32_MAX } from '../platform/schemas.ts';

export type Product = {
  id: number;
  userId: number;
  name: string;
  description: string;
  // NUMERIC(10,2) as PostgreSQL writes it, e.g. "149.99"
  price: string;
  stock: number;
  createdAt: Date;
  updatedAt: Date;
};

// The most characters (code points, as JSON Schema's maxLength counts them) of a product's
// text. The seed sets none; without one, 100 products of 1 MB descriptions made every list
// 100 MB and ran the process out of memory and its queries out of time (an outside review).
// 200 is the API keys' name limit; 10,000 holds a long catalogue text with room to spare.
export const PRODUCT_TEXT = { name: 200, description: 10_000 } as const;

const PRODUCT_FIELDS = {
  name: Type.String({ maxLength: PRODUCT_TEXT.name }),
  description: Type.String({ maxLength: PRODUCT_TEXT.description }),
  price: Type.Number(),
  stock: Type.Integer(),
};
export const CreateProductRequest = goStruct('CreateProductRequest', PRODUCT_FIELDS, {
  example: { name: 'Laptop', description: '14 inch', price: 1299.99, stock: 10 },
});
export const UpdateProductRequest = goStruct('UpdateProductRequest', PRODUCT_FIELDS, {
  example: { price: 1199.99 },
});
export type ProductRequest = Static<typeof CreateProductRequest>;

export type NewProduct = { name: string; description: string; price: string; stock: number };
// Absent fields are left as they are.
export type ProductChanges = Partial<NewProduct>;

// A broken business rule; the message is the client-facing text ("validation: ..."), the field
// the path of the request field to blame, when there is one ("items[0].quantity"): gRPC's
// INVALID_ARGUMENT names it in its field violations (src/grpc/errors.ts).
export class RuleViolationError extends Error {
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(message);
    this.field = field;
  }
}

export class ProductNotFoundError extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`not_found: product with id ${id} does not exist`);
    this.id = id;
  }
}

export class NotProductOwnerError extends Error {
  constructor() {
    super('forbidden: you do not own this product');
  }
}

const MAX_PRICE = 100_000_000;
const MAX_STOCK = INT32_MAX;

export function checkNoNul(fields: Readonly<Record<string, unknown>>): void {
  for (const [field, value] of Object.entries(fields)) {
    if (typeof value === 'string' && value.includes('\u0000'))
      throw new RuleViolationError(`validation: ${field} must not contain a NUL character`, field);
  }
}

// Whether `text` has at most `max` code points: a string of at most `max` UTF-16 units does.
function fitsIn(text: string, max: number): boolean {
  if (text.length <= max) return true;
  let count = 0;
  for (const _ of text) if (++count > max) return false;
  return true;
}

// The lengths as sent (before the name's trim), as the request schema's maxLength states them.
function checkTextLengths(input: ProductRequest): void {
  for (const field of ['name', 'description'] as const) {
    const value = input[field];
    if (typeof value === 'string' && !fitsIn(value, PRODUCT_TEXT[field]))
      throw new RuleViolationError(
        `validation: ${field} must not be more than ${PRODUCT_TEXT[field]} characters long`,
        field,
      );
  }
}

// The price as NUMERIC text, exactly as sent.
function checkPrice(price: number): string {
  // JSON cannot carry NaN, but a protobuf double can (gRPC), and PostgreSQL's numeric stores it.
  if (Number.isNaN(price)) throw new RuleViolationError('validation: price must be a number');
  if (price < 0) throw new RuleViolationError('validation: price cannot be negative');
  if (price >= MAX_PRICE) throw new RuleViolationError('validation: price must be less than 100000000');
  // Exact: a double is the nearest one to some two-decimal value exactly when dividing its
  // rounded cents by 100 (correctly rounded) gives it back; 1.000000001 does not, and is
  // refused rather than rounded (a tolerance on price * 100 let it through as 1).
  const cents = Math.round(price * 100);
  if (cents / 100 !== price)
    throw new RuleViolationError('validation: price must have at most two decimal places');
  return (cents / 100).toFixed(2);
}

function checkStock(stock: number): number {
  if (stock < 0) throw new RuleViolationError('validation: stock cannot be negative');
  if (stock > MAX_STOCK) throw new RuleViolationError(`validation: stock must not be more than ${MAX_STOCK}`);
  return stock;
}

export function validateNewProduct(input: ProductRequest): NewProduct {
  checkNoNul(input);
  checkTextLengths(input);
  const name = (input.name ?? '').trim();
  if (name === '') throw new RuleViolationError('validation: product name is required');
  return {
    name,
    description: input.description ?? '',
    price: checkPrice(input.price ?? 0),
    stock: checkStock(input.stock ?? 0),
  };
}

// The seed's PATCH: only sent (non-null) fields; nothing sent is an error.
export function validateProductChanges(input: ProductRequest): ProductChanges {
  checkNoNul(input);
  checkTextLengths(input);
  const changes: ProductChanges = {};
  if (input.name != null) {
    changes.name = input.name.trim();
    if (changes.name === '') throw new RuleViolationError('validation: product name cannot be empty');
  }
  if (input.description != null) changes.description = input.description;
  if (input.price != null) changes.price = checkPrice(input.price);
  if (input.stock != null) changes.stock = checkStock(input.stock);
  if (Object.keys(changes).length === 0)
    throw new RuleViolationError('validation: no fields provided for update');
  return changes;
}

export const ProductSchema = Type.Object(
  {
    id: Type.Integer(),
    user_id: Type.Integer(),
    name: Type.String(),
    description: Type.Optional(Type.String({ description: "left out when empty, as Go's omitempty does" })),
    price: Type.Number({ description: 'at most two decimals, below 10^8', examples: [149.99] }),
    stock: Type.Integer(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

export type ProductJson = Static<typeof ProductSchema>;

// GET /api/v1/products' paging, read with Go's strconv.Atoi: the seed never refuses a page or
// a limit but falls back to the default. The ranges are the schema's minimum, maximum and
// default, written once here; its descriptions and productPage (REST and GraphQL alike) read
// them (TypeBox's types do not keep a schema's options, hence the constants).
export const PRODUCT_PAGE = { minimum: 1, default: 1 } as const;
export const PRODUCT_LIMIT = { minimum: 1, maximum: 100, default: 20 } as const;
export const ProductListQuery = Type.Object({
  page: Type.Optional(
    Type.Integer({
      ...PRODUCT_PAGE,
      description: `below ${PRODUCT_PAGE.minimum} (or not a number) means ${PRODUCT_PAGE.default}`,
    }),
  ),
  limit: Type.Optional(
    Type.Integer({
      ...PRODUCT_LIMIT,
      description: `outside ${PRODUCT_LIMIT.minimum}-${PRODUCT_LIMIT.maximum} (or not a number) means ${PRODUCT_LIMIT.default}`,
    }),
  ),
});

// The seed's JSON: description is `omitempty`, price a number.
export function toProductJson(product: Product): ProductJson {
  return {
    id: product.id,
    user_id: product.userId,
    name: product.name,
    ...(product.description === '' ? {} : { description: product.description }),
    price: Number(product.price),
    stock: product.stock,
    created_at: product.createdAt.toISOString(),
    updated_at: product.updatedAt.toISOString(),
  };
}
