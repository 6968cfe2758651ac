// The movie type, its input shapes and the book's business rules for it.
import { type Static, Type } from 'typebox';
import { bookBody, type DecodedBody } from '../platform/json-body.ts';
import { Int32, RUNTIME_PATTERN, Runtime } from '../platform/schemas.ts';
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
// The limits, written once: the schema's prose and validateMovie both use them. Bytes, not
// characters, so JSON Schema's maxLength cannot state them; validateMovie checks them (422).
export const MAX_TITLE_BYTES = 500;
// An index entry has to fit in a third of a page; 500 bytes, like a title, is far below.
const MAX_GENRE_BYTES = 500;
const MIN_YEAR = 1888;
export const MAX_GENRES = 5;

const Title = Type.String({ description: `at most ${MAX_TITLE_BYTES} bytes`, examples: ['Arrival'] });
const Year = Int32({ description: `${MIN_YEAR} up to the current year`, examples: [2016] });
const Genres = Type.Array(Type.String({ description: `at most ${MAX_GENRE_BYTES} bytes` }), {
  description: `1 to ${MAX_GENRES} distinct genres`,
  examples: [['drama', 'sci-fi']],
});

export const CreateMovieBody = bookBody(
  Type.Object(
    { title: Title, year: Year, runtime: Runtime, genres: Genres },
    {
      additionalProperties: false,
      examples: [{ title: 'Arrival', year: 2016, runtime: '116 mins', genres: ['drama', 'sci-fi'] }],
    },
  ),
);

// A partial update: absent or null fields are left as they are (the book's pointer fields).
export const UpdateMovieBody = bookBody(
  Type.Object(
    {
      title: Type.Optional(Type.Union([Title, Type.Null()])),
      year: Type.Optional(Type.Union([Year, Type.Null()])),
      runtime: Type.Optional(Type.Union([Runtime, Type.Null()])),
      genres: Type.Optional(Type.Union([Genres, Type.Null()])),
    },
    { additionalProperties: false, examples: [{ year: 2017 }] },
  ),
);

export type CreateMovieInput = DecodedBody<typeof CreateMovieBody>;
export type UpdateMovieInput = DecodedBody<typeof UpdateMovieBody>;

// Like Go, a field the client left out is its zero value when validated.
export function validateMovie(movie: Partial<MovieFields>, now = new Date()): void {
  const v = new Validator();
  const title = movie.title ?? '';
  const year = movie.year ?? 0;
  const runtime = movie.runtime ?? 0;
  v.check(title !== '', 'title', 'must be provided');
  v.check(
    Buffer.byteLength(title) <= MAX_TITLE_BYTES,
    'title',
    `must not be more than ${MAX_TITLE_BYTES} bytes long`,
  );
  v.check(isStorable(title), 'title', NUL_MESSAGE);
  v.check(year !== 0, 'year', 'must be provided');
  v.check(year >= MIN_YEAR, 'year', `must be greater than ${MIN_YEAR}`);
  v.check(year <= now.getFullYear(), 'year', 'must not be in the future');
  v.check(runtime !== 0, 'runtime', 'must be provided');
  v.check(runtime > 0, 'runtime', 'must be a positive integer');
  v.check(movie.genres !== undefined, 'genres', 'must be provided');
  const genres = movie.genres ?? [];
  v.check(genres.length >= 1, 'genres', 'must contain at least 1 genre');
  v.check(genres.length <= MAX_GENRES, 'genres', `must not contain more than ${MAX_GENRES} genres`);
  v.check(isUnique(genres), 'genres', 'must not contain duplicate values');
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
    runtime: Type.String({ pattern: RUNTIME_PATTERN, examples: ['116 mins'] }),
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

export type MovieJson = Static<typeof MovieJsonSchema>;

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
