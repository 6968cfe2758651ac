// Movie use cases: validate, then persist through movies.sql.ts.
import type { Db, Queryable } from '../platform/db.ts';
import { EditConflictError } from '../platform/errors.ts';
import { calculateMetadata, type Metadata, type MovieListQuery } from './filters.ts';
import { type CreateMovieInput, type Movie, type UpdateMovieInput, validateMovie } from './movie.ts';
import * as sql from './movies.sql.ts';

// Told after each movie change this process commits. With -redis-url the change streams
// publish a wake-up to every process on it (src/realtime/wakeups.ts); the outbox row and its
// NOTIFY are written by the change's own statement either way.
const changeListeners = new Set<() => void>();

export function onMoviesChanged(listener: () => void): () => void {
  changeListeners.add(listener);
  return () => changeListeners.delete(listener);
}

export function announceMoviesChanged(): void {
  for (const listener of changeListeners) listener();
}

export async function createMovie(db: Db, input: CreateMovieInput): Promise<Movie> {
  validateMovie(input);
  const { title, year, runtime, genres } = input as Required<CreateMovieInput>;
  const movie = await sql.insertMovie(db, { title, year, runtime, genres });
  announceMoviesChanged();
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
  announceMoviesChanged();
  return updated;
}

export async function deleteMovie(db: Db, id: string): Promise<void> {
  await sql.deleteMovie(db, id);
  announceMoviesChanged();
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
