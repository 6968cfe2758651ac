// Products in GraphQL: the products API's permission checks (requireScope) and use cases,
// with a product's owner and a page of an owner's products batched per request by DataLoaders,
// so a page of products with their owners costs one query for the owners, not one per product.
import DataLoader from 'dataloader';
import { usersByIds } from '../accounts/accounts.ts';
import type { User } from '../accounts/user.ts';
import { parseInt64Id, requester, requireScope } from '../api-v1/products.routes.ts';
import { PRODUCT_LIMIT, PRODUCT_PAGE, type Product } from '../products/product.ts';
import * as products from '../products/products.ts';
import { pageArgument } from './cost.ts';
import { productsApiResolvers } from './dialect.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';
import { charge } from './response-size.ts';

const canRead = requireScope('products:read');
const canWrite = requireScope('products:write');

type PageArgs = { page?: number | null; limit?: number | null };

// The seed's paging (GET /api/v1/products) for every list of products.
const PAGE_DEFAULT = 20;
const pageQuery = (args: PageArgs): products.PageQuery => ({
  page: BigInt(args.page ?? 1),
  limit: BigInt(args.limit ?? PAGE_DEFAULT),
});

type Loaders = {
  owners: DataLoader<number, User>;
  // one loader per page asked for: each batches the owners that want that page
  productsOf: Map<string, DataLoader<number, Product[]>>;
};

// One set per request: the context object is new for each one.
const loaders = new WeakMap<GraphqlContext, Loaders>();

function loadersOf(context: GraphqlContext): Loaders {
  let found = loaders.get(context);
  if (!found) {
    found = {
      owners: new DataLoader(async (ids) => {
        const byId = await usersByIds(context.db, ids);
        return ids.map((id) => byId.get(id) ?? new Error(`user ${id} not found`));
      }),
      productsOf: new Map(),
    };
    loaders.set(context, found);
  }
  return found;
}

function productsOf(context: GraphqlContext, ownerId: number, args: PageArgs): Promise<Product[]> {
  const query = pageQuery(args);
  const key = `${query.page}/${query.limit}`;
  const all = loadersOf(context).productsOf;
  let loader = all.get(key);
  if (!loader) {
    loader = new DataLoader(async (ownerIds) => {
      const byOwner = await products.productsByOwners(context.db, ownerIds, query);
      return ownerIds.map((id) => byOwner.get(id) ?? []);
    });
    all.set(key, loader);
  }
  return loader.load(ownerId);
}

const ownPage = (field: Parameters<typeof pageArgument>[0]) => ({
  size: pageArgument(field, 'limit', PAGE_DEFAULT),
});

type ProductInput = {
  name?: string | null;
  description?: string | null;
  price?: number | null;
  stock?: number | null;
};

const id = (raw: string) => parseInt64Id(raw, 'invalid product id');

// GET /api/v1/products' rules, from its query schema's ranges.
const PAGING = `page below ${PRODUCT_PAGE.minimum} is ${PRODUCT_PAGE.default}; limit outside ${PRODUCT_LIMIT.minimum}-${PRODUCT_LIMIT.maximum} is ${PRODUCT_LIMIT.default}`;

export const productsModule: GraphqlModule = {
  typeDefs: /* GraphQL */ `
    extend type Query {
      "Needs products:read. An id that names no product is NOT_FOUND."
      product(id: ID!): Product!
      "Needs products:read. ${PAGING}, as on GET /api/v1/products."
      products(page: Int, limit: Int): ProductPage!
    }

    extend type Mutation {
      "Needs products:write. The caller owns the new product."
      createProduct(input: ProductInput!): Product!
      "Needs products:write. Only the owner or an admin; FORBIDDEN otherwise."
      updateProduct(id: ID!, input: ProductInput!): Product!
      "Needs products:write. Only the owner or an admin. Returns the id of the deleted product."
      deleteProduct(id: ID!): ID!
    }

    type Product {
      id: ID!
      name: String!
      description: String!
      "at most two decimals, below 10^8"
      price: Float!
      stock: Int!
      createdAt: String!
      updatedAt: String!
      owner: Owner!
    }

    "Who owns products: no e-mail, which the products API never shows either."
    type Owner {
      id: ID!
      name: String!
      "Needs products:read. Newest first, a page at a time: ${PAGING}."
      products(page: Int, limit: Int): [Product!]!
    }

    type ProductPage {
      data: [Product!]!
      total: Int!
      page: Int!
      limit: Int!
    }

    input ProductInput {
      name: String
      description: String
      price: Float
      stock: Int
    }

    extend type User {
      "Needs products:read. Newest first, a page at a time: ${PAGING}."
      products(page: Int, limit: Int): [Product!]!
    }
  `,
  resolvers: productsApiResolvers({
    Query: {
      product: async (_: unknown, args: { id: string }, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        return products.getProduct(context.db, id(args.id));
      },
      products: async (_: unknown, args: PageArgs, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        const page = await products.listProducts(context.db, pageQuery(args));
        return { ...page, page: Number(page.page) };
      },
    },
    Mutation: {
      createProduct: async (_: unknown, args: { input: ProductInput }, context: GraphqlContext) => {
        await canWrite(context.httpRequest);
        return products.createProduct(context.db, requester(context.httpRequest), args.input);
      },
      updateProduct: async (
        _: unknown,
        args: { id: string; input: ProductInput },
        context: GraphqlContext,
      ) => {
        await canWrite(context.httpRequest);
        return products.updateProduct(context.db, requester(context.httpRequest), id(args.id), args.input);
      },
      deleteProduct: async (_: unknown, args: { id: string }, context: GraphqlContext) => {
        await canWrite(context.httpRequest);
        const productId = id(args.id);
        await products.deleteProduct(context.db, requester(context.httpRequest), productId);
        return productId;
      },
    },
    Product: {
      // rows written before the text's length limit (PRODUCT_TEXT) may hold more: charged to the ceiling
      name: (product: Product, _: unknown, context: GraphqlContext) => charge(context.budget, product.name),
      description: (product: Product, _: unknown, context: GraphqlContext) =>
        charge(context.budget, product.description),
      price: (product: Product) => Number(product.price),
      createdAt: (product: Product) => product.createdAt.toISOString(),
      updatedAt: (product: Product) => product.updatedAt.toISOString(),
      owner: (product: Product, _: unknown, context: GraphqlContext) =>
        loadersOf(context).owners.load(product.userId),
    },
    Owner: {
      // reachable from a mutation's answer too: a key that may only write must not read here
      products: async (owner: User, args: PageArgs, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        return productsOf(context, owner.id, args);
      },
    },
    User: {
      products: async (user: User, args: PageArgs, context: GraphqlContext) => {
        await canRead(context.httpRequest);
        return productsOf(context, user.id, args);
      },
    },
  }),
  listSizes: {
    'Query.products': (field) => ({ size: 1, pass: pageArgument(field, 'limit', PAGE_DEFAULT) }),
    'ProductPage.data': (_, inherited) => ({ size: inherited }),
    'Owner.products': ownPage,
    'User.products': ownPage,
  },
};
