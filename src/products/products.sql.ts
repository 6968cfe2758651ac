// SQL for the products table. Changes by a non-owner are ruled out inside the statement
// (user_id = the requester, unless an admin asks), so no read-then-write race exists.
import type { Queryable } from '../platform/db.ts';
import { eventTraceContext, lockSubject, type Outbox, recordEvents } from '../platform/outbox.ts';
import type { NewProduct, Product, ProductChanges } from './product.ts';

type ProductRow = {
  id: number;
  user_id: number;
  name: string;
  description: string;
  price: string;
  stock: number;
  created_at: Date;
  updated_at: Date;
};

function toProduct(row: ProductRow): Product {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    description: row.description,
    price: row.price,
    stock: row.stock,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const COLUMNS = 'id, user_id, name, description, price, stock, created_at, updated_at';

// Every change writes its event to the product_events outbox in the same statement
// (src/platform/outbox.ts); the payload holds the row's columns, price as its NUMERIC text.
// Streams are woken on this channel after the commit.
export const PRODUCT_EVENTS_CHANNEL = 'product_events';
const PRODUCT_EVENTS: Outbox = {
  table: 'product_events',
  subjectColumn: 'product_id',
  lockKey: 7_235_020,
};
const PRODUCT_JSON = `json_build_object('id', m.id, 'user_id', m.user_id, 'name', m.name,
  'description', m.description, 'price', m.price::text, 'stock', m.stock,
  'created_at', m.created_at, 'updated_at', m.updated_at)`;

// The product an event's payload (PRODUCT_JSON) holds; its timestamps come as JSON text.
export function productOfEventPayload(payload: Record<string, unknown>): Product {
  const row = payload as Omit<ProductRow, 'created_at' | 'updated_at'> & {
    created_at: string;
    updated_at: string;
  };
  return toProduct({ ...row, created_at: new Date(row.created_at), updated_at: new Date(row.updated_at) });
}
const M_COLUMNS = COLUMNS.split(', ')
  .map((column) => `m.${column}`)
  .join(', ');

const INSERT = `
  WITH m AS (
    INSERT INTO products (user_id, name, description, price, stock)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING ${COLUMNS}
  ),${recordEvents(PRODUCT_EVENTS, 'product.created', PRODUCT_JSON, '$6')}
  SELECT ${M_COLUMNS} FROM m`;

// One round trip for the page and the total; the total is there even past the last page.
// LIMIT and OFFSET through subqueries: as plain parameters PostgreSQL planned the page on
// every call, its generic plan (the same index scan, on 200,000 products too) estimated for
// an unknown limit and so looking dearer (the movie list's page, docs/decisions.md).
const SELECT_PAGE = `
  WITH page AS (
    SELECT ${COLUMNS} FROM products ORDER BY created_at DESC, id DESC
    LIMIT (SELECT $1::bigint) OFFSET (SELECT $2::bigint)
  )
  SELECT (SELECT count(*) FROM products) AS total, page.*
  FROM (VALUES (1)) AS one
  LEFT JOIN page ON true`;

const SELECT_BY_ID = `SELECT ${COLUMNS} FROM products WHERE id = $1`;

const SELECT_OWNER = 'SELECT user_id FROM products WHERE id = $1';

// A page of each owner's products: the same page of every owner in one statement.
const SELECT_BY_OWNERS = `
  SELECT p.* FROM unnest($1::bigint[]) AS owner(id)
  CROSS JOIN LATERAL (
    SELECT ${COLUMNS} FROM products WHERE user_id = owner.id
    ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3
  ) AS p`;

const UPDATE = `
  WITH m AS (
    UPDATE products
    SET name = COALESCE($3, name),
        description = COALESCE($4, description),
        price = COALESCE($5::numeric, price),
        stock = COALESCE($6::integer, stock),
        updated_at = now()
    WHERE id = $1 AND (user_id = $2 OR $7) AND ${lockSubject(PRODUCT_EVENTS, '$1')}
    RETURNING ${COLUMNS}
  ),${recordEvents(PRODUCT_EVENTS, 'product.updated', PRODUCT_JSON, '$8')}
  SELECT ${M_COLUMNS} FROM m`;

const DELETE = `
  WITH m AS (
    DELETE FROM products WHERE id = $1 AND (user_id = $2 OR $3) AND ${lockSubject(PRODUCT_EVENTS, '$1')}
    RETURNING id
  ),${recordEvents(PRODUCT_EVENTS, 'product.deleted', "json_build_object('id', m.id)", '$4')}
  SELECT m.id FROM m`;

export async function insertProduct(db: Queryable, userId: number, product: NewProduct): Promise<Product> {
  const { rows } = await db.query<ProductRow>({
    name: 'insert-product',
    text: INSERT,
    values: [userId, product.name, product.description, product.price, product.stock, eventTraceContext()],
  });
  return toProduct(rows[0] as ProductRow);
}

export async function selectProductPage(
  db: Queryable,
  limit: number,
  offset: bigint,
): Promise<{ products: Product[]; total: number }> {
  const { rows } = await db.query<ProductRow & { total: number }>({
    name: 'select-product-page',
    text: SELECT_PAGE,
    values: [limit, offset.toString()],
  });
  const products = rows.filter((row) => row.id !== null).map(toProduct);
  return { products, total: (rows[0] as { total: number }).total };
}

export async function selectProduct(db: Queryable, id: string): Promise<Product | undefined> {
  const { rows } = await db.query<ProductRow>({ name: 'select-product', text: SELECT_BY_ID, values: [id] });
  return rows[0] && toProduct(rows[0]);
}

export async function selectProductOwner(db: Queryable, id: string): Promise<number | undefined> {
  const { rows } = await db.query<{ user_id: number }>({
    name: 'select-product-owner',
    text: SELECT_OWNER,
    values: [id],
  });
  return rows[0]?.user_id;
}

// undefined: no such product, or not the requester's to change.
export async function updateProduct(
  db: Queryable,
  id: string,
  requester: { userId: number; admin: boolean },
  changes: ProductChanges,
): Promise<Product | undefined> {
  const { rows } = await db.query<ProductRow>({
    name: 'update-product',
    text: UPDATE,
    values: [
      id,
      requester.userId,
      changes.name ?? null,
      changes.description ?? null,
      changes.price ?? null,
      changes.stock ?? null,
      requester.admin,
      eventTraceContext(),
    ],
  });
  return rows[0] && toProduct(rows[0]);
}

// false: no such product, or not the requester's to delete.
export async function deleteProduct(
  db: Queryable,
  id: string,
  requester: { userId: number; admin: boolean },
): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'delete-product',
    text: DELETE,
    values: [id, requester.userId, requester.admin, eventTraceContext()],
  });
  return (rowCount ?? 0) > 0;
}

// A page of the products of many owners in one query (batch loaders), newest first.
export async function selectProductsByOwners(
  db: Queryable,
  ownerIds: readonly number[],
  limit: number,
  offset: bigint,
): Promise<Product[]> {
  const { rows } = await db.query<ProductRow>(SELECT_BY_OWNERS, [ownerIds, limit, offset]);
  return rows.map(toProduct);
}

// Stock taken by orders (src/orders) and given back: one conditional statement each, so two
// orders never take the same last units (no read-then-write) and the CHECK (stock >= 0) is never
// even approached. A returned unit never pushes stock past the column's integer range. Neither
// writes a product event (only the owner's own changes do; docs/orders.md).
const TAKE_STOCK = 'UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING id';
const RETURN_STOCK = 'UPDATE products SET stock = LEAST(stock::bigint + $2, 2147483647) WHERE id = $1';
const SELECT_PRICES = 'SELECT id, price FROM products WHERE id = ANY($1::bigint[])';

export async function takeStock(db: Queryable, id: number, quantity: number): Promise<boolean> {
  const { rowCount } = await db.query({ name: 'take-stock', text: TAKE_STOCK, values: [id, quantity] });
  return (rowCount ?? 0) > 0;
}

export async function returnStock(db: Queryable, id: number, quantity: number): Promise<void> {
  await db.query({ name: 'return-stock', text: RETURN_STOCK, values: [id, quantity] });
}

// Each existing product's price (NUMERIC text) by id.
export async function selectPrices(db: Queryable, ids: readonly number[]): Promise<Map<number, string>> {
  const { rows } = await db.query<{ id: string; price: string }>({
    name: 'select-prices',
    text: SELECT_PRICES,
    values: [ids],
  });
  return new Map(rows.map((row) => [Number(row.id), row.price]));
}

const PRODUCT_STATS = `
  SELECT count(*) AS total, coalesce(sum(stock), 0)::bigint AS stock,
         count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS created_last_day,
         count(*) FILTER (WHERE updated_at > now() - interval '24 hours') AS updated_last_day
  FROM products`;

export type ProductStats = { total: number; stock: number; createdLastDay: number; updatedLastDay: number };

export async function selectProductStats(db: Queryable): Promise<ProductStats> {
  const { rows } = await db.query<{
    total: number;
    stock: number;
    created_last_day: number;
    updated_last_day: number;
  }>(PRODUCT_STATS);
  const row = rows[0] as { total: number; stock: number; created_last_day: number; updated_last_day: number };
  return {
    total: row.total,
    stock: row.stock,
    createdLastDay: row.created_last_day,
    updatedLastDay: row.updated_last_day,
  };
}
