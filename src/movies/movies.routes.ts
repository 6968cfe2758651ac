// /v1/movies routes: parse → call → reply with the book's envelope. Each route's schema is
// its whole wire contract (see platform/schemas.ts).
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { requirePermission } from '../accounts/guards.ts';
import type { Db } from '../platform/db.ts';
import { deferredBody, paramsOf, queryOf } from '../platform/request.ts';
import { BEARER_REQUIRED, errors, IdParams, MessageEnvelope, response } from '../platform/schemas.ts';
import { MovieListQueryString } from './filters.ts';
import {
  CreateMovieBody,
  type CreateMovieInput,
  MovieJsonSchema,
  toMovieJson,
  UpdateMovieBody,
  type UpdateMovieInput,
} from './movie.ts';
import type { MovieCache } from './movie-cache.ts';
import * as movies from './movies.ts';

const MovieEnvelope = Type.Object({ movie: MovieJsonSchema }, { additionalProperties: false });

const MovieListEnvelope = Type.Object(
  {
    metadata: Type.Object(
      {
        current_page: Type.Optional(Type.Integer()),
        page_size: Type.Optional(Type.Integer()),
        first_page: Type.Optional(Type.Integer()),
        last_page: Type.Optional(Type.Integer()),
        total_records: Type.Optional(Type.Integer()),
      },
      { description: 'empty ({}) when the page holds no movies', additionalProperties: false },
    ),
    movies: Type.Array(MovieJsonSchema),
  },
  { additionalProperties: false },
);

const ExpectedVersionHeader = Type.Object({
  'x-expected-version': Type.Optional(
    Type.String({ description: 'the version the client last read; a different current version is a 409' }),
  ),
});

const CACHE_HEADER = {
  'X-Cache': {
    type: 'string',
    description:
      'Only with -redis-url: HIT (from the shared cache), MISS (read from the database and cached) or BYPASS (Redis unavailable)',
  },
};

const TAGS = ['movies'];

// With `cache` (-redis-url), the two reads are answered from it when they can; `afterDelete`
// runs when a movie is deleted.
export async function movieRoutes(
  app: FastifyInstance,
  {
    db,
    cache,
    afterDelete,
  }: Readonly<{ db: Db; cache?: MovieCache; afterDelete?: movies.AfterMovieDeleted }>,
): Promise<void> {
  collectionRoutes(app, db, cache);
  movieByIdRoutes(app, { db, cache, afterDelete });
}

const read = requirePermission('movies:read');
const write = requirePermission('movies:write');

// /v1/movies: list, create.
function collectionRoutes(app: FastifyInstance, db: Db, cache?: MovieCache): void {
  app.get(
    '/v1/movies',
    {
      onRequest: read,
      schema: {
        operationId: 'listMovies',
        summary: 'List movies, filtered, sorted and paginated (movies:read)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        querystring: MovieListQueryString,
        response: {
          200: response(MovieListEnvelope, 'A page of movies with its metadata', CACHE_HEADER),
          ...errors(403, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const query = queryOf(request, MovieListQueryString);
      const load = async () => {
        const { movies: list, metadata } = await movies.listMovies(db, query);
        return { metadata, movies: list.map(toMovieJson) };
      };
      return cache ? cache.list(reply, query, load) : load();
    },
  );

  app.post(
    '/v1/movies',
    {
      onRequest: write,
      schema: {
        operationId: 'createMovie',
        summary: 'Create a movie (movies:write)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        body: CreateMovieBody,
        response: {
          201: response(MovieEnvelope, 'The movie as stored', {
            Location: { type: 'string', description: 'the new movie: /v1/movies/{id}', required: true },
          }),
          ...errors(400, 403, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const movie = await movies.createMovie(db, request.body as CreateMovieInput);
      reply.code(201).header('location', `/v1/movies/${movie.id}`);
      return { movie: toMovieJson(movie) };
    },
  );
}

// /v1/movies/:id: read, update, delete.
type MovieByIdDeps = Readonly<{ db: Db; cache?: MovieCache; afterDelete?: movies.AfterMovieDeleted }>;

function movieByIdRoutes(app: FastifyInstance, { db, cache, afterDelete }: MovieByIdDeps): void {
  app.get(
    '/v1/movies/:id',
    {
      onRequest: read,
      schema: {
        operationId: 'getMovie',
        summary: 'Read one movie (movies:read)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        response: { 200: response(MovieEnvelope, 'The movie', CACHE_HEADER), ...errors(403, 404, 500) },
      },
    },
    async (request, reply) => {
      const id = paramsOf(request, IdParams).id;
      const load = async () => ({ movie: toMovieJson(await movies.getMovie(db, id)) });
      return cache ? cache.movie(reply, id, load) : load();
    },
  );

  app.patch(
    '/v1/movies/:id',
    {
      onRequest: write,
      // The book reads the body after the movie's lookup and its version check (404, 409 first).
      attachValidation: true,
      schema: {
        operationId: 'updateMovie',
        summary: 'Update some fields of a movie; its version goes up by one (movies:write)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        headers: ExpectedVersionHeader,
        body: UpdateMovieBody,
        response: {
          200: response(MovieEnvelope, 'The movie as updated'),
          ...errors(400, 403, 404, 409, 422, 500),
        },
      },
    },
    async (request) => {
      const id = paramsOf(request, IdParams).id;
      const expected = request.headers['x-expected-version'];
      const movie = await movies.updateMovie(
        db,
        id,
        () => deferredBody(request, UpdateMovieBody) as UpdateMovieInput,
        typeof expected === 'string' && expected !== '' ? expected : undefined,
      );
      return { movie: toMovieJson(movie) };
    },
  );

  app.delete(
    '/v1/movies/:id',
    {
      onRequest: write,
      schema: {
        operationId: 'deleteMovie',
        summary: 'Delete a movie (movies:write)',
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: IdParams,
        response: {
          200: response(MessageEnvelope, 'movie successfully deleted'),
          ...errors(403, 404, 500),
        },
      },
    },
    async (request) => {
      await movies.deleteMovie(db, paramsOf(request, IdParams).id, afterDelete);
      return { message: 'movie successfully deleted' };
    },
  );
}
