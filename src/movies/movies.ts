// Movie use cases: validate, then persist through movies.sql.ts.
import type { Db, Queryable } from '../platform/db.ts';
import { EditConflictError } from '../platform/errors.ts';
import { type Posters, removeMoviePosterObjects } from '../posters/posters.ts';
import { calculateMetadata, type Metadata, type MovieListQuery } from './filters.ts';
import { type CreateMovieInput, type Movie, type UpdateMovieInput, validateMovie } from './movie.ts';
import * as sql from './movies.sql.ts';

export async function createMovie(db: Db, input: CreateMovieInput): Promise<Movie> {
  validateMovie(input);
  const { title, year, runtime, genres } = input as Required<CreateMovieInput>;
  return sql.insertMovie(db, { title, year, runtime, genres });
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
  return sql.updateMovie(db, changed);
}

// The poster's row goes with the movie (ON DELETE CASCADE), which records its stored object
// for deletion; with `posters` that object is removed at once, else by the next sweep.
export async function deleteMovie(db: Db, id: string, posters?: Posters): Promise<void> {
  await sql.deleteMovie(db, id);
  if (posters) await removeMoviePosterObjects(posters, id);
}

export async function listMovies(
  db: Db,
  query: MovieListQuery,
): Promise<{ movies: Movie[]; metadata: Metadata }> {
  const { movies, total } = await sql.selectMovies(db, query);
  return { movies, metadata: calculateMetadata(total, query.page, query.pageSize) };
}

export function movieStats(db: Queryable): ReturnType<typeof sql.selectMovieStats> {
  return sql.selectMovieStats(db);
}
