// The movie type, its input shapes and the book's business rules for it.
import { Type } from 'typebox';
import type { DecodedBody } from '../platform/json-body.ts';
import { Int32, Runtime } from '../platform/schemas.ts';
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

// A movie as a list shows it: without created_at, which no list returns (the book hides it).
export type ListedMovie = Omit<Movie, 'createdAt'>;

// What a client may send. Nothing here lets a client set id, created_at or version. A field
// left out of a create is Go's zero value and fails validation (422), not decoding.
const Title = Type.String({ description: 'at most 500 bytes', examples: ['Arrival'] });
const Year = Int32({ description: '1888 up to the current year', examples: [2016] });
const Genres = Type.Array(Type.String({ description: 'at most 500 bytes' }), {
  description: '1 to 5 distinct genres',
  examples: [['drama', 'sci-fi']],
});

export const CreateMovieBody = Type.Object(
  { title: Title, year: Year, runtime: Runtime, genres: Genres },
  {
    additionalProperties: false,
    examples: [{ title: 'Arrival', year: 2016, runtime: '116 mins', genres: ['drama', 'sci-fi'] }],
  },
);

// A partial update: absent or null fields are left as they are (the book's pointer fields).
export const UpdateMovieBody = Type.Object(
  {
    title: Type.Optional(Type.Union([Title, Type.Null()])),
    year: Type.Optional(Type.Union([Year, Type.Null()])),
    runtime: Type.Optional(Type.Union([Runtime, Type.Null()])),
    genres: Type.Optional(Type.Union([Genres, Type.Null()])),
  },
  { additionalProperties: false, examples: [{ year: 2017 }] },
);

export type CreateMovieInput = DecodedBody<typeof CreateMovieBody>;
export type UpdateMovieInput = DecodedBody<typeof UpdateMovieBody>;

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
export const MovieJsonSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1, examples: [11] }),
    title: Type.String(),
    year: Type.Integer(),
    runtime: Type.String({ pattern: '^[0-9]+ mins$', examples: ['116 mins'] }),
    genres: Type.Array(Type.String()),
    version: Type.Integer({ minimum: 1, description: 'raised by every update; see X-Expected-Version' }),
  },
  {
    additionalProperties: false,
    examples: [
      { id: 11, title: 'Arrival', year: 2016, runtime: '116 mins', genres: ['drama', 'sci-fi'], version: 1 },
    ],
  },
);

export type MovieJson = {
  id: number;
  title: string;
  year: number;
  runtime: string;
  genres: string[];
  version: number;
};

export function toMovieJson(movie: ListedMovie): MovieJson {
  return {
    id: movie.id,
    title: movie.title,
    year: movie.year,
    runtime: `${movie.runtime} mins`,
    genres: movie.genres,
    version: movie.version,
  };
}
