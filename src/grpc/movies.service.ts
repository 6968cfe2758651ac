// greenlight.v1.MoviesService: the /v1/movies routes' permission checks and use cases,
// called as they are; messages are the REST JSON, typed (movies.proto).
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type {
  ListMoviesRequest,
  MoviesService,
  UpdateMovieRequest,
} from '../../gen/greenlight/v1/movies_pb.ts';
import { permissionRefusal } from '../accounts/guards.ts';
import { type Metadata, readMovieListQuery } from '../movies/filters.ts';
import { type MovieJson, toMovieJson, type UpdateMovieInput } from '../movies/movie.ts';
import * as movies from '../movies/movies.ts';
import type { Db } from '../platform/db.ts';
import { parseId } from '../platform/http.ts';
import { MOVIES } from '../realtime/topics.ts';
import { callDb, callerOf } from './calls.ts';
import { type WatchDeps, watchTopic } from './watch.ts';

export type MoviesServiceDeps = Readonly<{
  db: Db;
  afterDelete?: movies.AfterMovieDeleted;
  watch: WatchDeps;
}>;

function allow(context: HandlerContext, permission: 'movies:read' | 'movies:write'): void {
  const refused = permissionRefusal(callerOf(context), permission);
  if (refused) throw refused;
}

// The movie as REST shows it; a deleted movie's event holds only its id and version.
export function protoMovie(json: Partial<MovieJson>) {
  return {
    id: BigInt(json.id ?? 0),
    title: json.title ?? '',
    year: json.year ?? 0,
    runtimeMinutes: json.runtime === undefined ? 0 : Number.parseInt(json.runtime, 10),
    genres: json.genres ?? [],
    version: json.version ?? 0,
  };
}

function protoMetadata(metadata: Metadata) {
  if (!('current_page' in metadata)) return undefined;
  return {
    currentPage: metadata.current_page,
    pageSize: metadata.page_size,
    firstPage: metadata.first_page,
    lastPage: metadata.last_page,
    totalRecords: BigInt(metadata.total_records),
  };
}

// The request as the query string GET /v1/movies reads, so the same reader applies the same
// defaults, limits and messages.
function asQueryString(request: ListMoviesRequest): Record<string, string | undefined> {
  return {
    title: request.title || undefined,
    genres: request.genres.length > 0 ? request.genres.join(',') : undefined,
    sort: request.sort || undefined,
    page: request.page === undefined ? undefined : String(request.page),
    page_size: request.pageSize === undefined ? undefined : String(request.pageSize),
  };
}

// Unset fields are left as they are; no genres means none given (proto3 cannot tell an
// empty list from an absent one).
function given(request: Omit<UpdateMovieRequest, 'id' | 'expectedVersion' | '$typeName'>): UpdateMovieInput {
  return {
    title: request.title,
    year: request.year,
    runtime: request.runtimeMinutes,
    genres: request.genres.length > 0 ? request.genres : undefined,
  };
}

export function moviesService({
  db,
  afterDelete,
  watch,
}: MoviesServiceDeps): ServiceImpl<typeof MoviesService> {
  return {
    async getMovie(request, context) {
      allow(context, 'movies:read');
      const movie = await movies.getMovie(callDb(db, context), parseId(String(request.id)));
      return { movie: protoMovie(toMovieJson(movie)) };
    },
    async listMovies(request, context) {
      allow(context, 'movies:read');
      const query = readMovieListQuery(asQueryString(request));
      const page = await movies.listMovies(callDb(db, context), query);
      return {
        movies: page.movies.map((movie) => protoMovie(toMovieJson(movie))),
        metadata: protoMetadata(page.metadata),
      };
    },
    async createMovie(request, context) {
      allow(context, 'movies:write');
      const movie = await movies.createMovie(callDb(db, context), given(request));
      return { movie: protoMovie(toMovieJson(movie)) };
    },
    async updateMovie(request, context) {
      allow(context, 'movies:write');
      const expected = request.expectedVersion === undefined ? undefined : String(request.expectedVersion);
      const id = parseId(String(request.id));
      const movie = await movies.updateMovie(callDb(db, context), id, () => given(request), expected);
      return { movie: protoMovie(toMovieJson(movie)) };
    },
    async deleteMovie(request, context) {
      allow(context, 'movies:write');
      await movies.deleteMovie(callDb(db, context), parseId(String(request.id)), afterDelete);
      return {};
    },
    async *watchMovieChanges(request, context) {
      allow(context, 'movies:read');
      for await (const { event, data } of watchTopic(watch, MOVIES, request.afterEventId, context)) {
        yield { event, movie: data && protoMovie(data as Partial<MovieJson>) };
      }
    },
  };
}
