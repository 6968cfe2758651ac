// Accounts in GraphQL: the caller (`me`) and the User type other modules extend, behind the
// REST routes' guard (requireAuthenticated).
import { requireAuthenticated } from '../accounts/guards.ts';
import { toUserJson, type User } from '../accounts/user.ts';
import { MAX_PAGE } from './cost.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';

const accountResolvers = {
  Query: {
    me: async (_: unknown, __: unknown, { httpRequest }: GraphqlContext) => {
      await requireAuthenticated(httpRequest);
      return httpRequest.identity;
    },
  },
  Viewer: {
    user: (identity: User) => identity,
  },
  User: {
    createdAt: (user: User) => toUserJson(user).created_at,
  },
};

export const accountsModule: GraphqlModule = {
  typeDefs: /* GraphQL */ `
    type Query {
      "The caller: an authenticated user, activated or not."
      me: Viewer!
    }

    type Mutation

    type User {
      id: ID!
      name: String!
      email: String!
      activated: Boolean!
      "RFC 3339, whole seconds, as in the REST API"
      createdAt: String!
    }

    type Viewer {
      user: User!
      permissions: [String!]!
    }
  `,
  resolvers: accountResolvers,
  listSizes: {
    // the permission codes a user holds: a handful, counted as a full page
    'Viewer.permissions': () => ({ size: MAX_PAGE }),
  },
};
