// Movies in GraphQL: the REST routes' permission checks and use cases, called as they are.
import { requirePermission } from '../accounts/guards.ts';
import { type Metadata, readMovieListQuery } from '../movies/filters.ts';
import { MAX_GENRES, type UpdateMovieInput } from '../movies/movie.ts';
import * as movies from '../movies/movies.ts';
import { parseId } from '../platform/http.ts';
import { afterMovieDeleted } from '../posters/posters.ts';
import { pageArgument } from './cost.ts';
import type { GraphqlContext, GraphqlModule } from './module.ts';

const canRead = requirePermission('movies:read');
const canWrite = requirePermission('movies:write');

type MovieInput = {
  title?: string | null;
  year?: number | null;
  runtime?: number | null;
  genres?: string[] | null;
};

// GraphQL's explicit null means "not given", as a JSON null does for the REST decoder.
function given(input: MovieInput): UpdateMovieInput {
  return {
    title: input.title ?? undefined,
    year: input.year ?? undefined,
    runtime: input.runtime ?? undefined,
    genres: input.genres ?? undefined,
  };
}

type ListArgs = {
  title?: string | null;
  genres?: string[] | null;
  sort?: string | null;
  page?: number | null;
  pageSize?: number | null;
};

// The arguments as the query string GET /v1/movies reads, so the same reader applies the same
// defaults, limits and 422 messages (keyed page_size, as there).
function asQueryString(args: ListArgs): Record<string, string | undefined> {
  return {
    title: args.title ?? undefined,
    genres: args.genres?.join(','),
    sort: args.sort ?? undefined,
    page: args.page == null ? undefined : String(args.page),
    page_size: args.pageSize == null ? undefined : String(args.pageSize),
  };
}

const movieResolvers = {
  Query: {
    movie: async (_: unknown, args: { id: string }, { db, httpRequest }: GraphqlContext) => {
      await canRead(httpRequest);
      return movies.getMovie(db, parseId(args.id));
    },
    movies: async (_: unknown, args: ListArgs, { db, httpRequest }: GraphqlContext) => {
      await canRead(httpRequest);
      return movies.listMovies(db, readMovieListQuery(asQueryString(args)));
    },
  },
  Mutation: {
    createMovie: async (_: unknown, args: { input: MovieInput }, { db, httpRequest }: GraphqlContext) => {
      await canWrite(httpRequest);
      return movies.createMovie(db, given(args.input));
    },
    updateMovie: async (
      _: unknown,
      args: { id: string; input: MovieInput; expectedVersion?: number | null },
      { db, httpRequest }: GraphqlContext,
    ) => {
      await canWrite(httpRequest);
      const expected = args.expectedVersion == null ? undefined : String(args.expectedVersion);
      return movies.updateMovie(db, parseId(args.id), () => given(args.input), expected);
    },
    deleteMovie: async (_: unknown, args: { id: string }, { db, httpRequest, posters }: GraphqlContext) => {
      await canWrite(httpRequest);
      const id = parseId(args.id);
      await movies.deleteMovie(db, id, posters && afterMovieDeleted(posters));
      return id;
    },
  },
  Metadata: {
    currentPage: (m: Metadata) => ('current_page' in m ? m.current_page : null),
    pageSize: (m: Metadata) => ('page_size' in m ? m.page_size : null),
    firstPage: (m: Metadata) => ('first_page' in m ? m.first_page : null),
    lastPage: (m: Metadata) => ('last_page' in m ? m.last_page : null),
    totalRecords: (m: Metadata) => ('total_records' in m ? m.total_records : null),
  },
};

export const moviesModule: GraphqlModule = {
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
