// The product type, its request shapes and seed 002's rules, with its messages. Beyond the
// seed: prices are NUMERIC(10,2), so more than two decimals or 10^8 and above are refused
// rather than rounded; stock must fit PostgreSQL's integer; text must not hold NUL, which
// PostgreSQL cannot store.
import type { GoStruct, GoValues } from '../api-v1/go-json.ts';

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

const PRODUCT_FIELDS = { name: 'string', description: 'string', price: 'float64', stock: 'int' } as const;
export const CREATE_PRODUCT_REQUEST = {
  name: 'CreateProductRequest',
  fields: PRODUCT_FIELDS,
} as const satisfies GoStruct;
export const UPDATE_PRODUCT_REQUEST = {
  name: 'UpdateProductRequest',
  fields: PRODUCT_FIELDS,
} as const satisfies GoStruct;
export type ProductRequest = GoValues<typeof CREATE_PRODUCT_REQUEST>;

export type NewProduct = { name: string; description: string; price: string; stock: number };
// Absent fields are left as they are.
export type ProductChanges = Partial<NewProduct>;

// A broken business rule; the message is the client-facing text ("validation: ...").
export class RuleViolationError extends Error {}

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
const MAX_STOCK = 2_147_483_647;

export function checkNoNul(fields: Readonly<Record<string, unknown>>): void {
  for (const [field, value] of Object.entries(fields)) {
    if (typeof value === 'string' && value.includes('\u0000'))
      throw new RuleViolationError(`validation: ${field} must not contain a NUL character`);
  }
}

// The price as NUMERIC text, exactly as sent.
function checkPrice(price: number): string {
  if (price < 0) throw new RuleViolationError('validation: price cannot be negative');
  if (price >= MAX_PRICE) throw new RuleViolationError('validation: price must be less than 100000000');
  const cents = Math.round(price * 100);
  if (Math.abs(cents - price * 100) > 1e-6)
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

export type ProductJson = {
  id: number;
  user_id: number;
  name: string;
  description?: string;
  price: number;
  stock: number;
  created_at: string;
  updated_at: string;
};

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
