// /api/v1/products: seed 002's products CRUD, behind any enabled credential.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Identity } from '../accounts/user.ts';
import type { Db } from '../platform/db.ts';
import { AuthenticationRequiredError, BadRequestError, NotPermittedError } from '../platform/errors.ts';
import { first, paramsOf, parseInt64, queryOf, type RawPart, withPartReader } from '../platform/request.ts';
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
    // the page asked for, exactly: an int64 such as 2^63-1 is written as Go prints it
    page: Type.Integer({ format: 'int64' }),
    limit: Type.Integer(),
  },
  { additionalProperties: false },
);

const Int64Id = Type.Integer({ format: 'int64', examples: [7] });

// An id path parameter of this API, read with strconv.ParseInt(id, 10, 64): anything else is
// 400 with the route's message, so each resource's params are a schema of their own.
export function int64Params(message: string) {
  return withPartReader(Type.Object({ id: Int64Id }), (part) => ({
    id: parseInt64Id((part.id as string | undefined) ?? '', message),
  }));
}

const ProductIdParams = int64Params('invalid product id');
// PATCH has always answered a bad body before a bad id, and Fastify checks params before the
// body: that route parses its id in the handler, after the body was read.
const UpdateProductParams = Type.Object({ id: Int64Id });

// The seed reads both with strconv.Atoi, whose failure is 0: productPage then falls back.
const ListQuery = withPartReader(ProductListQuery, (query) => ({
  page: atoi(query.page),
  limit: atoi(query.limit),
}));

const ROUTE = { tags: ['products'], security: BEARER_REQUIRED };

// strconv.Atoi: a failed parse is 0.
function atoi(value: RawPart[string]): bigint {
  return parseInt64(first(value) ?? '') ?? 0n;
}

// strconv.ParseInt(id, 10, 64), formatted back as Go's %d would.
export function parseInt64Id(raw: string, message: string): string {
  const n = parseInt64(raw);
  if (n === undefined) throw new BadRequestError(message);
  return n.toString();
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
  return requesterOf(request.identity as Identity);
}

export function requesterOf(identity: Identity): products.Requester {
  return { userId: identity.id, admin: identity.role === 'admin' };
}

export function productRoutes(api: FastifyInstance, db: Db): void {
  collectionRoutes(api, db);
  productByIdRoutes(api, db);
}

const read = requireScope('products:read');
const write = requireScope('products:write');
const body = (request: FastifyRequest) => request.body as ProductRequest;
const idOf = (request: FastifyRequest) => paramsOf(request, ProductIdParams).id;

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
        querystring: ListQuery,
        response: { 200: response(ProductPage, 'A page of products'), ...apiErrors(401, 403, 500) },
      },
    },
    async (request) => {
      const page = await products.listProducts(db, queryOf(request, ListQuery));
      return {
        data: page.data.map(toProductJson),
        total: page.total,
        // a bigint: the serializer writes all its digits, where a number would lose some
        page: page.page,
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
        params: ProductIdParams,
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
        params: UpdateProductParams,
        body: UpdateProductRequest,
        response: {
          200: response(ProductSchema, 'The product as updated'),
          ...apiErrors(400, 401, 403, 404, 413, 422, 500),
        },
      },
    },
    async (request) => {
      const id = parseInt64Id((request.params as { id: string }).id, 'invalid product id');
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
        params: ProductIdParams,
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
