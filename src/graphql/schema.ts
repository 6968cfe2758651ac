// The GraphQL schema: each module's part (its SDL, resolvers and list sizes, one file per
// module in src/graphql) joined here. A module adds its types and may extend Query, Mutation
// and the types of other modules (`extend type User`).
import { makeExecutableSchema } from '@graphql-tools/schema';
import type { GraphQLSchema } from 'graphql';
import { accountsModule } from './accounts.ts';
import type { ListSizes } from './cost.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';
import { moviesModule } from './movies.ts';
import { ordersModule } from './orders.ts';
import { productsModule } from './products.ts';

// Accounts first: its SDL declares Query and Mutation, which the others extend.
export const GRAPHQL_MODULES: readonly GraphqlModule[] = [
  accountsModule,
  moviesModule,
  productsModule,
  ordersModule,
];

export function listSizes(modules: readonly GraphqlModule[] = GRAPHQL_MODULES): ListSizes {
  return Object.assign({}, ...modules.map((m) => m.listSizes ?? {}));
}

export function buildGraphqlSchema(modules: readonly GraphqlModule[] = GRAPHQL_MODULES): GraphQLSchema {
  return makeExecutableSchema<GraphqlContext>({
    typeDefs: modules.map((m) => m.typeDefs),
    resolvers: modules.map((m) => m.resolvers),
  });
}
