// Movie use cases: validate, then persist through movies.sql.ts.
import type { Db, Queryable } from '../platform/db.ts';
import { EditConflictError } from '../platform/errors.ts';
import { changeObservers } from '../platform/observers.ts';
import { calculateMetadata, type Metadata, type MovieListQuery } from './filters.ts';
import {
  type CreateMovieInput,
  type ListedMovie,
  type Movie,
  type UpdateMovieInput,
  validateMovie,
} from './movie.ts';
import * as sql from './movies.sql.ts';

// Called after a change of movies has committed, with the ids of the movies that changed or
// went (none for new ones), e.g. to invalidate a shared cache.
const movieChanges = changeObservers<readonly number[]>();
export const observeMovieChanges = movieChanges.observe;
export const moviesChanged = movieChanges.changed;

export async function createMovie(db: Db, input: CreateMovieInput): Promise<Movie> {
  validateMovie(input);
  const { title, year, runtime, genres } = input as Required<CreateMovieInput>;
  const movie = await sql.insertMovie(db, { title, year, runtime, genres });
  await moviesChanged(db, []);
  return movie;
}

export function getMovie(db: Db, id: string): Promise<Movie> {
  return sql.selectMovie(db, id);
}

// `expectedVersion` is the client's X-Expected-Version header, when it sent one.
export async function updateMovie(
  db: Db,
  id: string,
  readInput: () => UpdateMovieInput,
  expectedVersion: string | undefined,
): Promise<Movie> {
  const movie = await sql.selectMovie(db, id);
  if (expectedVersion !== undefined && expectedVersion !== String(movie.version))
    throw new EditConflictError();
  const input = readInput();
  const changed: Movie = {
    ...movie,
    title: input.title ?? movie.title,
    year: input.year ?? movie.year,
    runtime: input.runtime ?? movie.runtime,
    genres: input.genres ?? movie.genres,
  };
  validateMovie(changed);
  const updated = await sql.updateMovie(db, changed);
  await moviesChanged(db, [updated.id]);
  return updated;
}

// What else goes at once when a movie is deleted, passed in by whoever knows it (posters know
// movies, not the other way round). Called after the deletion, so it must not throw.
export type AfterMovieDeleted = (movieId: string) => Promise<void>;

// The poster's row goes with the movie (ON DELETE CASCADE), which records its stored object
// for deletion; `afterDelete` may remove that object at once, else the next sweep does.
export async function deleteMovie(db: Db, id: string, afterDelete?: AfterMovieDeleted): Promise<void> {
  await sql.deleteMovie(db, id);
  await moviesChanged(db, [Number(id)]);
  if (afterDelete) await afterDelete(id);
}

// The last count of each recent combination of filters, per pool (a snapshot of one database
// means nothing to another). selectMovies counts again when the snapshot no longer holds, so
// the total stays exact; the bound keeps arbitrary title searches from growing the map.
const countedTotals = new WeakMap<Db, Map<string, sql.CountedTotal>>();
const MAX_COUNTED_TOTALS = 128;

export async function listMovies(
  db: Db,
  query: MovieListQuery,
): Promise<{ movies: ListedMovie[]; metadata: Metadata }> {
  const totals = countedTotals.get(db) ?? new Map<string, sql.CountedTotal>();
  countedTotals.set(db, totals);
  const key = JSON.stringify([query.title, query.genres]);
  const { movies, total, counted } = await sql.selectMovies(db, query, totals.get(key));
  if (counted) {
    totals.delete(key);
    totals.set(key, counted);
    if (totals.size > MAX_COUNTED_TOTALS) totals.delete(totals.keys().next().value as string);
  }
  return { movies, metadata: calculateMetadata(total, query.page, query.pageSize) };
}

export function movieStats(db: Queryable): ReturnType<typeof sql.selectMovieStats> {
  return sql.selectMovieStats(db);
}
