// greenlight.v1.ProductsService: the /api/v1/products routes' scope checks and use cases,
// called as they are; messages are the products API's JSON, typed (products.proto).
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { CreateProductRequest, ProductsService } from '../../gen/greenlight/v1/products_pb.ts';
import type { Identity } from '../accounts/user.ts';
import { parseInt64Id, requesterOf, scopeRefusal } from '../api-v1/products.routes.ts';
import type { Db } from '../platform/db.ts';
import { type ProductJson, type ProductRequest, toProductJson } from '../products/product.ts';
import * as products from '../products/products.ts';
import { PRODUCTS } from '../realtime/topics.ts';
import { callDb, callerOf } from './calls.ts';
import { type WatchDeps, watchTopic } from './watch.ts';

export type ProductsServiceDeps = Readonly<{ db: Db; watch: WatchDeps }>;

function allow(context: HandlerContext, scope: 'products:read' | 'products:write'): Identity {
  const identity = callerOf(context);
  const refused = scopeRefusal(identity, scope);
  if (refused) throw refused;
  return identity as Identity;
}

// The product as the products API shows it; a deleted product's event holds only its id.
export function protoProduct(json: Partial<ProductJson>) {
  return {
    id: BigInt(json.id ?? 0),
    userId: BigInt(json.user_id ?? 0),
    name: json.name ?? '',
    description: json.description ?? '',
    price: json.price ?? 0,
    stock: json.stock ?? 0,
    createdAt: json.created_at ?? '',
    updatedAt: json.updated_at ?? '',
  };
}

// The fields given, as a JSON body would give them.
function given(request: Omit<CreateProductRequest, '$typeName'>): ProductRequest {
  const { name, description, price, stock } = request;
  return Object.fromEntries(
    Object.entries({ name, description, price, stock }).filter(([, value]) => value !== undefined),
  ) as ProductRequest;
}

const productId = (id: bigint) => parseInt64Id(String(id), 'invalid product id');

export function productsService({ db, watch }: ProductsServiceDeps): ServiceImpl<typeof ProductsService> {
  return {
    async getProduct(request, context) {
      allow(context, 'products:read');
      const product = await products.getProduct(callDb(db, context), productId(request.id));
      return { product: protoProduct(toProductJson(product)) };
    },
    async listProducts(request, context) {
      allow(context, 'products:read');
      const page = await products.listProducts(callDb(db, context), {
        page: request.page,
        limit: request.limit,
      });
      return {
        data: page.data.map((product) => protoProduct(toProductJson(product))),
        total: BigInt(page.total),
        page: page.page,
        limit: page.limit,
      };
    },
    async createProduct(request, context) {
      const requester = requesterOf(allow(context, 'products:write'));
      const product = await products.createProduct(callDb(db, context), requester, given(request));
      return { product: protoProduct(toProductJson(product)) };
    },
    async updateProduct(request, context) {
      const requester = requesterOf(allow(context, 'products:write'));
      const id = productId(request.id);
      const product = await products.updateProduct(callDb(db, context), requester, id, given(request));
      return { product: protoProduct(toProductJson(product)) };
    },
    async deleteProduct(request, context) {
      const requester = requesterOf(allow(context, 'products:write'));
      await products.deleteProduct(callDb(db, context), requester, productId(request.id));
      return {};
    },
    async *watchProductChanges(request, context) {
      allow(context, 'products:read');
      for await (const { event, data } of watchTopic(watch, PRODUCTS, request.afterEventId, context)) {
        yield { event, product: data && protoProduct(data as Partial<ProductJson>) };
      }
    },
  };
}
