// /v1/movies routes: parse → call → reply with the book's envelope.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { requirePermission } from '../accounts/auth.ts';
import type { Db } from '../platform/db.ts';
import { readIdParam } from '../platform/http.ts';
import { decodeJsonBody } from '../platform/json-body.ts';
import { readMovieListQuery } from './filters.ts';
import { CREATE_MOVIE_INPUT, toMovieJson, UPDATE_MOVIE_INPUT } from './movie.ts';
import * as movies from './movies.ts';

const MovieSchema = Type.Object({
  id: Type.Integer(),
  title: Type.String(),
  year: Type.Integer(),
  runtime: Type.String(),
  genres: Type.Array(Type.String()),
  version: Type.Integer(),
});

const MovieEnvelope = Type.Object({ movie: MovieSchema });

const MovieListEnvelope = Type.Object({
  metadata: Type.Object({
    current_page: Type.Optional(Type.Integer()),
    page_size: Type.Optional(Type.Integer()),
    first_page: Type.Optional(Type.Integer()),
    last_page: Type.Optional(Type.Integer()),
    total_records: Type.Optional(Type.Integer()),
  }),
  movies: Type.Array(MovieSchema),
});

const MessageEnvelope = Type.Object({ message: Type.String() });

export const MOVIE_PATHS = ['/v1/movies', '/v1/movies/:id'] as const;

export function movieRoutes(app: FastifyInstance, db: Db): void {
  const read = requirePermission('movies:read');
  const write = requirePermission('movies:write');

  app.get(
    '/v1/movies',
    { onRequest: read, schema: { response: { 200: MovieListEnvelope } } },
    async (request) => {
      const query = readMovieListQuery(request.query as Record<string, string | string[]>);
      const { movies: list, metadata } = await movies.listMovies(db, query);
      return { metadata, movies: list.map(toMovieJson) };
    },
  );

  app.post(
    '/v1/movies',
    { onRequest: write, schema: { response: { 201: MovieEnvelope } } },
    async (request, reply) => {
      const input = decodeJsonBody(request.body as Buffer | undefined, CREATE_MOVIE_INPUT);
      const movie = await movies.createMovie(db, input);
      reply.code(201).header('location', `/v1/movies/${movie.id}`);
      return { movie: toMovieJson(movie) };
    },
  );

  app.get(
    '/v1/movies/:id',
    { onRequest: read, schema: { response: { 200: MovieEnvelope } } },
    async (request) => {
      const movie = await movies.getMovie(db, readIdParam(request));
      return { movie: toMovieJson(movie) };
    },
  );

  app.patch(
    '/v1/movies/:id',
    { onRequest: write, schema: { response: { 200: MovieEnvelope } } },
    async (request) => {
      const id = readIdParam(request);
      const expected = request.headers['x-expected-version'];
      const movie = await movies.updateMovie(
        db,
        id,
        () => decodeJsonBody(request.body as Buffer | undefined, UPDATE_MOVIE_INPUT),
        typeof expected === 'string' && expected !== '' ? expected : undefined,
      );
      return { movie: toMovieJson(movie) };
    },
  );

  app.delete(
    '/v1/movies/:id',
    { onRequest: write, schema: { response: { 200: MessageEnvelope } } },
    async (request) => {
      await movies.deleteMovie(db, readIdParam(request));
      return { message: 'movie successfully deleted' };
    },
  );
}
