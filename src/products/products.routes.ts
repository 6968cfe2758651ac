// /api/v1/products: seed 002's products CRUD, behind any enabled credential.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { requireAuthenticated } from '../accounts/auth.ts';
import type { Db } from '../platform/db.ts';
import { BadRequestError, NotPermittedError } from '../platform/errors.ts';
import { decodeGoJson } from './go-json.ts';
import { CREATE_PRODUCT_REQUEST, toProductJson, UPDATE_PRODUCT_REQUEST } from './product.ts';
import * as products from './products.ts';

export const ApiError = Type.Object({ code: Type.Integer(), message: Type.String() });

const ProductSchema = Type.Object({
  id: Type.Integer(),
  user_id: Type.Integer(),
  name: Type.String(),
  description: Type.Optional(Type.String()),
  price: Type.Number(),
  stock: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const ProductPage = Type.Object({
  data: Type.Array(ProductSchema),
  total: Type.Integer(),
  page: Type.Integer(),
  limit: Type.Integer(),
});

// Go's Query().Get: the first value; the handlers parse it with strconv.Atoi.
const QueryValue = Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())]));
const ListQuery = Type.Object({ page: QueryValue, limit: QueryValue });
const IdParams = Type.Object({ id: Type.String() });

// The errors every products route can answer, besides its own.
export const AUTH_ERRORS = { 401: ApiError, 403: ApiError, 429: ApiError, 500: ApiError } as const;

export const PRODUCT_PATHS = ['/products', '/products/:id'] as const;

const MAX_INT64 = 9223372036854775807n;

// strconv.Atoi: a failed parse is 0.
function atoi(value: string | string[] | undefined): bigint {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^[+-]?\d+$/.test(text)) return 0n;
  const n = BigInt(text);
  return n > MAX_INT64 || n < -MAX_INT64 - 1n ? 0n : n;
}

// strconv.ParseInt(id, 10, 64), formatted back as Go's %d would.
export function readInt64Param(request: FastifyRequest, message: string): string {
  const raw = (request.params as { id: string }).id;
  if (!/^[+-]?\d+$/.test(raw)) throw new BadRequestError(message);
  const n = BigInt(raw);
  if (n > MAX_INT64 || n < -MAX_INT64 - 1n) throw new BadRequestError(message);
  return n.toString();
}

// A full credential may do anything; an API key only what its scopes name.
export function requireScope(code: string) {
  return async (request: FastifyRequest): Promise<void> => {
    await requireAuthenticated(request);
    const scopes = request.identity?.scopes;
    if (scopes && !scopes.includes(code)) throw new NotPermittedError();
  };
}

function requester(request: FastifyRequest): products.Requester {
  const identity = request.identity as NonNullable<FastifyRequest['identity']>;
  return { userId: identity.id, admin: identity.role === 'admin' };
}

export function productRoutes(api: FastifyInstance, db: Db): void {
  const read = requireScope('products:read');
  const write = requireScope('products:write');
  const body = (request: FastifyRequest) => request.body as Buffer | undefined;
  const idOf = (request: FastifyRequest) => readInt64Param(request, 'invalid product id');

  api.get(
    '/products',
    { onRequest: read, schema: { querystring: ListQuery, response: { 200: ProductPage, ...AUTH_ERRORS } } },
    async (request) => {
      const query = request.query as { page?: string | string[]; limit?: string | string[] };
      const page = await products.listProducts(db, { page: atoi(query.page), limit: atoi(query.limit) });
      return {
        data: page.data.map(toProductJson),
        total: page.total,
        page: Number(page.page),
        limit: page.limit,
      };
    },
  );

  api.post(
    '/products',
    {
      onRequest: write,
      schema: { response: { 201: ProductSchema, 400: ApiError, 422: ApiError, ...AUTH_ERRORS } },
    },
    async (request, reply) => {
      const input = decodeGoJson(body(request), CREATE_PRODUCT_REQUEST, false);
      const product = await products.createProduct(db, requester(request), input);
      reply.code(201);
      return toProductJson(product);
    },
  );

  api.get(
    '/products/:id',
    {
      onRequest: read,
      schema: {
        params: IdParams,
        response: { 200: ProductSchema, 400: ApiError, 404: ApiError, ...AUTH_ERRORS },
      },
    },
    async (request) => toProductJson(await products.getProduct(db, idOf(request))),
  );

  api.patch(
    '/products/:id',
    {
      onRequest: write,
      schema: {
        params: IdParams,
        response: { 200: ProductSchema, 400: ApiError, 404: ApiError, 422: ApiError, ...AUTH_ERRORS },
      },
    },
    async (request) => {
      const id = idOf(request);
      const input = decodeGoJson(body(request), UPDATE_PRODUCT_REQUEST, false);
      return toProductJson(await products.updateProduct(db, requester(request), id, input));
    },
  );

  api.delete(
    '/products/:id',
    {
      onRequest: write,
      schema: {
        params: IdParams,
        response: { 204: Type.Null(), 400: ApiError, 404: ApiError, ...AUTH_ERRORS },
      },
    },
    async (request, reply) => {
      await products.deleteProduct(db, requester(request), idOf(request));
      reply.code(204).send();
      return reply;
    },
  );
}
