// The GraphQL schema: one SDL per module, joined with its resolvers. A module adds its types
// and may extend Query, Mutation and the types of other modules (`extend type User`).
import { makeExecutableSchema } from '@graphql-tools/schema';
import type { GraphQLSchema } from 'graphql';
import { MAX_GENRES } from '../movies/movie.ts';
import { type ListSizes, MAX_PAGE, pageArgument } from './cost.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';
import { productsModule } from './products.ts';
import { accountResolvers, movieResolvers } from './resolvers.ts';

const accounts: GraphqlModule = {
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

const movies: GraphqlModule = {
  typeDefs: /* GraphQL */ `
    extend type Query {
      "Needs movies:read. An id that names no movie is NOT_FOUND, as on GET /v1/movies/:id."
      movie(id: ID!): Movie!
      "Needs movies:read. The filters, sort values, defaults and limits of GET /v1/movies."
      movies(title: String, genres: [String!], sort: String, page: Int, pageSize: Int): MovieList!
    }

    extend type Mutation {
      "Needs movies:write. Missing fields fail validation with the REST messages."
      createMovie(input: MovieInput!): Movie!
      "Needs movies:write. With expectedVersion, a movie changed meanwhile is EDIT_CONFLICT."
      updateMovie(id: ID!, input: MovieInput!, expectedVersion: Int): Movie!
      "Needs movies:write. Returns the id of the deleted movie."
      deleteMovie(id: ID!): ID!
    }

    type Movie {
      id: ID!
      title: String!
      year: Int!
      "minutes"
      runtime: Int!
      genres: [String!]!
      version: Int!
    }

    "Every field is optional here; the business rules say which ones a movie needs."
    input MovieInput {
      title: String
      year: Int
      runtime: Int
      genres: [String!]
    }

    type MovieList {
      movies: [Movie!]!
      metadata: Metadata!
    }

    "Empty (every field null) when nothing matched, as in the REST API."
    type Metadata {
      currentPage: Int
      pageSize: Int
      firstPage: Int
      lastPage: Int
      totalRecords: Int
    }
  `,
  resolvers: movieResolvers,
  listSizes: {
    // GET /v1/movies's page_size: 20 by default, at most 100 (a larger one is VALIDATION)
    'Query.movies': (field) => ({ size: 1, pass: pageArgument(field, 'pageSize', 20) }),
    'MovieList.movies': (_, inherited) => ({ size: inherited }),
    'Movie.genres': () => ({ size: MAX_GENRES }),
  },
};

export const GRAPHQL_MODULES: readonly GraphqlModule[] = [accounts, movies, productsModule];

export function listSizes(modules: readonly GraphqlModule[] = GRAPHQL_MODULES): ListSizes {
  return Object.assign({}, ...modules.map((m) => m.listSizes ?? {}));
}

export function buildGraphqlSchema(modules: readonly GraphqlModule[] = GRAPHQL_MODULES): GraphQLSchema {
  return makeExecutableSchema<GraphqlContext>({
    typeDefs: modules.map((m) => m.typeDefs),
    resolvers: modules.map((m) => m.resolvers),
  });
}
