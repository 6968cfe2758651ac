// /api/v1/products: seed 002's products CRUD, behind any enabled credential.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Identity } from '../accounts/user.ts';
import type { Db } from '../platform/db.ts';
import { AuthenticationRequiredError, BadRequestError, NotPermittedError } from '../platform/errors.ts';
import { first, parseInt64 } from '../platform/request.ts';
import { BEARER_REQUIRED, response } from '../platform/schemas.ts';
import {
  CreateProductRequest,
  ProductListQuery,
  type ProductRequest,
  ProductSchema,
  toProductJson,
  UpdateProductRequest,
} from '../products/product.ts';
import * as products from '../products/products.ts';
import { apiErrors, NoContent } from './responses.ts';

const ProductPage = Type.Object(
  {
    data: Type.Array(ProductSchema),
    total: Type.Integer(),
    page: Type.Integer(),
    limit: Type.Integer(),
  },
  { additionalProperties: false },
);

// strconv.ParseInt(id, 10, 64): anything else is 400 invalid product id.
export const Int64Params = Type.Object({ id: Type.Integer({ format: 'int64', examples: [7] }) });

const ROUTE = { tags: ['products'], security: BEARER_REQUIRED };

// strconv.Atoi: a failed parse is 0.
function atoi(value: string | string[] | undefined): bigint {
  return parseInt64(first(value) ?? '') ?? 0n;
}

// strconv.ParseInt(id, 10, 64), formatted back as Go's %d would.
export function parseInt64Id(raw: string, message: string): string {
  const n = parseInt64(raw);
  if (n === undefined) throw new BadRequestError(message);
  return n.toString();
}

export function readInt64Param(request: FastifyRequest, message: string): string {
  return parseInt64Id((request.params as { id: string }).id, message);
}

// Why an identity may not use `code` of this API, or null when it may: a full credential may
// do anything; an API key only what its scopes name.
export function scopeRefusal(identity: Identity | null, code: string): Error | null {
  if (identity === null) return new AuthenticationRequiredError();
  if (identity.scopes && !identity.scopes.includes(code)) return new NotPermittedError();
  return null;
}

export function requireScope(code: string) {
  return async (request: FastifyRequest): Promise<void> => {
    const refused = scopeRefusal(request.identity, code);
    if (refused) throw refused;
  };
}

export function requester(request: FastifyRequest): products.Requester {
  const identity = request.identity as NonNullable<FastifyRequest['identity']>;
  return { userId: identity.id, admin: identity.role === 'admin' };
}

export function productRoutes(api: FastifyInstance, db: Db): void {
  collectionRoutes(api, db);
  productByIdRoutes(api, db);
}

const read = requireScope('products:read');
const write = requireScope('products:write');
const body = (request: FastifyRequest) => request.body as ProductRequest;
const idOf = (request: FastifyRequest) => readInt64Param(request, 'invalid product id');

// /products: list, create.
function collectionRoutes(api: FastifyInstance, db: Db): void {
  api.get(
    '/products',
    {
      onRequest: read,
      schema: {
        ...ROUTE,
        operationId: 'listProducts',
        summary: 'A page of products with the total (products:read)',
        querystring: ProductListQuery,
        response: { 200: response(ProductPage, 'A page of products'), ...apiErrors(401, 403, 500) },
      },
    },
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
      schema: {
        ...ROUTE,
        operationId: 'createProduct',
        summary: 'Create a product owned by the caller (products:write)',
        body: CreateProductRequest,
        response: { 201: response(ProductSchema, 'The product'), ...apiErrors(400, 401, 403, 413, 422, 500) },
      },
    },
    async (request, reply) => {
      const product = await products.createProduct(db, requester(request), body(request));
      reply.code(201);
      return toProductJson(product);
    },
  );
}

// /products/:id: read; update and delete, for its owner or an admin.
function productByIdRoutes(api: FastifyInstance, db: Db): void {
  api.get(
    '/products/:id',
    {
      onRequest: read,
      schema: {
        ...ROUTE,
        operationId: 'getProduct',
        summary: 'Read one product (products:read)',
        params: Int64Params,
        response: { 200: response(ProductSchema, 'The product'), ...apiErrors(400, 401, 403, 404, 500) },
      },
    },
    async (request) => toProductJson(await products.getProduct(db, idOf(request))),
  );

  api.patch(
    '/products/:id',
    {
      onRequest: write,
      schema: {
        ...ROUTE,
        operationId: 'updateProduct',
        summary: 'Change the fields sent; owner or admin only (products:write)',
        params: Int64Params,
        body: UpdateProductRequest,
        response: {
          200: response(ProductSchema, 'The product as updated'),
          ...apiErrors(400, 401, 403, 404, 413, 422, 500),
        },
      },
    },
    async (request) => {
      const id = idOf(request);
      return toProductJson(await products.updateProduct(db, requester(request), id, body(request)));
    },
  );

  api.delete(
    '/products/:id',
    {
      onRequest: write,
      schema: {
        ...ROUTE,
        operationId: 'deleteProduct',
        summary: 'Delete a product; owner or admin only (products:write)',
        params: Int64Params,
        response: { 204: NoContent('Deleted'), ...apiErrors(400, 401, 403, 404, 500) },
      },
    },
    async (request, reply) => {
      await products.deleteProduct(db, requester(request), idOf(request));
      reply.code(204).send();
      return reply;
    },
  );
}
