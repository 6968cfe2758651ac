// The movie type, its input shapes and the book's business rules for it.
import type { Decoded } from '../platform/json-body.ts';
import { isStorable, isUnique, NUL_MESSAGE, Validator } from '../platform/validator.ts';

export type Movie = {
  id: number;
  createdAt: Date;
  title: string;
  year: number;
  runtime: number;
  genres: string[];
  version: number;
};

export type MovieFields = Pick<Movie, 'title' | 'year' | 'runtime' | 'genres'>;

// What a client may send. Nothing here lets a client set id, created_at or version.
export const CREATE_MOVIE_INPUT = {
  title: 'string',
  year: 'int32',
  runtime: 'runtime',
  genres: 'string[]',
} as const;
export const UPDATE_MOVIE_INPUT = {
  title: 'string?',
  year: 'int32?',
  runtime: 'runtime?',
  genres: 'string[]?',
} as const;
export type CreateMovieInput = Decoded<typeof CREATE_MOVIE_INPUT>;
export type UpdateMovieInput = Decoded<typeof UPDATE_MOVIE_INPUT>;

const MAX_GENRE_BYTES = 500;

// Like Go, a field the client left out is its zero value when validated.
export function validateMovie(movie: Partial<MovieFields>, now = new Date()): void {
  const v = new Validator();
  const title = movie.title ?? '';
  const year = movie.year ?? 0;
  const runtime = movie.runtime ?? 0;
  v.check(title !== '', 'title', 'must be provided');
  v.check(Buffer.byteLength(title) <= 500, 'title', 'must not be more than 500 bytes long');
  v.check(isStorable(title), 'title', NUL_MESSAGE);
  v.check(year !== 0, 'year', 'must be provided');
  v.check(year >= 1888, 'year', 'must be greater than 1888');
  v.check(year <= now.getFullYear(), 'year', 'must not be in the future');
  v.check(runtime !== 0, 'runtime', 'must be provided');
  v.check(runtime > 0, 'runtime', 'must be a positive integer');
  v.check(movie.genres !== undefined, 'genres', 'must be provided');
  const genres = movie.genres ?? [];
  v.check(genres.length >= 1, 'genres', 'must contain at least 1 genre');
  v.check(genres.length <= 5, 'genres', 'must not contain more than 5 genres');
  v.check(isUnique(genres), 'genres', 'must not contain duplicate values');
  // An index entry has to fit in a third of a page; 500 bytes, like a title, is far below.
  v.check(
    genres.every((genre) => Buffer.byteLength(genre) <= MAX_GENRE_BYTES),
    'genres',
    `must not contain a genre longer than ${MAX_GENRE_BYTES} bytes`,
  );
  v.check(genres.every(isStorable), 'genres', NUL_MESSAGE);
  v.assertValid();
}

// The wire form: runtime as "107 mins", no created_at (the book hides it).
export type MovieJson = {
  id: number;
  title: string;
  year: number;
  runtime: string;
  genres: string[];
  version: number;
};

export function toMovieJson(movie: Movie): MovieJson {
  return {
    id: movie.id,
    title: movie.title,
    year: movie.year,
    runtime: `${movie.runtime} mins`,
    genres: movie.genres,
    version: movie.version,
  };
}
