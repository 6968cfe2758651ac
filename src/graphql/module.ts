// What a GraphQL module is (its SDL, resolvers and list sizes) and the per-request context its
// resolvers get. Not in schema.ts, which joins the modules: a module importing these types from
// there would import the file that imports it.
import type { FastifyRequest } from 'fastify';
import type { OrdersDeps } from '../orders/orders.ts';
import type { Db } from '../platform/db.ts';
import type { Posters } from '../posters/posters.ts';
import type { ListSizes } from './cost.ts';
import type { ResponseBudget } from './response-size.ts';

// One per request. Per-request caches (DataLoaders) hang off it in a WeakMap of their module.
export type GraphqlContext = Readonly<{
  db: Db;
  // the Fastify request: its `identity` is what the REST routes' permission checks read
  httpRequest: FastifyRequest;
  // a deleted movie's poster object goes at once, as through REST
  posters?: Posters;
  // what placing an order needs besides the pool: the queue of its workflow's first step, and
  // the orders' metrics, as through REST
  orders?: Readonly<Omit<OrdersDeps, 'db'>>;
  // what is left of the response-size ceiling (response-size.ts)
  budget: ResponseBudget;
}>;

export type GraphqlModule = Readonly<{
  typeDefs: string;
  // biome-ignore lint/suspicious/noExplicitAny: resolver maps are checked by graphql-tools at start
  resolvers: Record<string, Record<string, any>>;
  // how many items each of its list fields may return, for the cost rule (cost.ts)
  listSizes?: ListSizes;
}>;
