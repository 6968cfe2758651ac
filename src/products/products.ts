// Product use cases. The requester is a plain argument, so the rules are testable without
// HTTP. Ownership is enforced by the UPDATE/DELETE themselves; only when they change
// nothing does a second look tell "not yours" (403) from "not there" (404), as the seed does.

import type { Db, Queryable } from '../platform/db.ts';
import { changeObservers } from '../platform/observers.ts';
import { INT64_MAX } from '../platform/request.ts';
import {
  PRODUCT_LIMIT as LIMIT,
  NotProductOwnerError,
  PRODUCT_PAGE as PAGE,
  type Product,
  ProductNotFoundError,
  type ProductRequest,
  validateNewProduct,
  validateProductChanges,
} from './product.ts';
import * as products from './products.sql.ts';

export type Requester = Readonly<{ userId: number; admin: boolean }>;

// Called after a change of products has committed (e.g. to wake other processes' change
// streams through Redis).
const productChanges = changeObservers<void>();
export const observeProductChanges = productChanges.observe;

export async function createProduct(db: Db, requester: Requester, input: ProductRequest): Promise<Product> {
  const product = await products.insertProduct(db, requester.userId, validateNewProduct(input));
  await productChanges.changed(db);
  return product;
}

export type PageQuery = { page: bigint; limit: bigint };

// The seed's rules, with the ranges of ProductListQuery: a page below its minimum, or a
// limit out of range, is the default. Past PostgreSQL's bigint no row exists anyway; the
// seed's Go would overflow instead.
export function productPage(query: PageQuery): { page: bigint; limit: number; offset: bigint } {
  const page = query.page < BigInt(PAGE.minimum) ? BigInt(PAGE.default) : query.page;
  const limit =
    query.limit < BigInt(LIMIT.minimum) || query.limit > BigInt(LIMIT.maximum)
      ? LIMIT.default
      : Number(query.limit);
  const offset = (page - 1n) * BigInt(limit);
  return { page, limit, offset: offset > INT64_MAX ? INT64_MAX : offset };
}

export async function listProducts(
  db: Db,
  query: PageQuery,
): Promise<{ data: Product[]; total: number; page: bigint; limit: number }> {
  const { page, limit, offset } = productPage(query);
  const { products: data, total } = await products.selectProductPage(db, limit, offset);
  return { data, total, page, limit };
}

export async function getProduct(db: Db, id: string): Promise<Product> {
  const product = await products.selectProduct(db, id);
  if (!product) throw new ProductNotFoundError(id);
  return product;
}

// Why a change was refused: the product is missing (404) or someone else's (403).
async function refusal(db: Db, id: string): Promise<Error> {
  const owner = await products.selectProductOwner(db, id);
  return owner === undefined ? new ProductNotFoundError(id) : new NotProductOwnerError();
}

export async function updateProduct(
  db: Db,
  requester: Requester,
  id: string,
  input: ProductRequest,
): Promise<Product> {
  let changes: ReturnType<typeof validateProductChanges>;
  try {
    changes = validateProductChanges(input);
  } catch (err) {
    // The seed checks existence and ownership before the fields.
    const owner = await products.selectProductOwner(db, id);
    if (owner === undefined) throw new ProductNotFoundError(id);
    if (owner !== requester.userId && !requester.admin) throw new NotProductOwnerError();
    throw err;
  }
  const updated = await products.updateProduct(db, id, requester, changes);
  if (!updated) throw await refusal(db, id);
  await productChanges.changed(db);
  return updated;
}

export async function deleteProduct(db: Db, requester: Requester, id: string): Promise<void> {
  if (!(await products.deleteProduct(db, id, requester))) throw await refusal(db, id);
  await productChanges.changed(db);
}

// The same page of each owner's products, for the GraphQL loaders: one query whatever the
// number of owners, and never more than a page of anyone's products.
export async function productsByOwners(
  db: Db,
  ownerIds: readonly number[],
  query: PageQuery,
): Promise<Map<number, Product[]>> {
  const { limit, offset } = productPage(query);
  const byOwner = new Map<number, Product[]>(ownerIds.map((id) => [id, []]));
  for (const product of await products.selectProductsByOwners(db, ownerIds, limit, offset)) {
    byOwner.get(product.userId)?.push(product);
  }
  return byOwner;
}

export type StockLine = Readonly<{ productId: number; quantity: number }>;

// Why stock could not be taken: the first product, in id order, that is missing or short.
export type StockShortage = Readonly<{ productId: number; missing: boolean }>;

// Takes every line's quantity inside the caller's transaction `client`, in product id order
// (so two orders wanting the same products never deadlock), or none: on a shortage the caller
// must roll back, since the lines before it were taken.
export async function reserveStock(
  client: Queryable,
  lines: readonly StockLine[],
): Promise<StockShortage | null> {
  for (const line of [...lines].sort((a, b) => a.productId - b.productId)) {
    if (await products.takeStock(client, line.productId, line.quantity)) continue;
    const owner = await products.selectProductOwner(client, String(line.productId));
    return { productId: line.productId, missing: owner === undefined };
  }
  return null;
}

// Gives every line's quantity back inside the caller's transaction; a product deleted since
// is passed over.
export async function releaseStock(client: Queryable, lines: readonly StockLine[]): Promise<void> {
  for (const line of [...lines].sort((a, b) => a.productId - b.productId)) {
    await products.returnStock(client, line.productId, line.quantity);
  }
}

// The current price (NUMERIC text) of each of `ids` that exists.
export function productPrices(db: Queryable, ids: readonly number[]): Promise<Map<number, string>> {
  return products.selectPrices(db, ids);
}
