// Query-string filters for GET /v1/movies, read and validated the book's way, with the
// limits and defaults of their schema.
import { Type } from 'typebox';
import { first, parseInt64, type RawPart, withPartReader } from '../platform/request.ts';
import { isStorable, NUL_MESSAGE, Validator } from '../platform/validator.ts';

export const SORT_SAFELIST = [
  'id',
  'title',
  'year',
  'runtime',
  '-id',
  '-title',
  '-year',
  '-runtime',
] as const;
export type Sort = (typeof SORT_SAFELIST)[number];

type Range = Readonly<{ minimum: number; maximum: number; default: number }>;
const PAGE: Range = { minimum: 1, maximum: 10_000_000, default: 1 };
const PAGE_SIZE: Range = { minimum: 1, maximum: 100, default: 20 };

// The route's query string is read by readMovieListQuery (GraphQL calls it on its arguments).
export const MovieListQueryString = withPartReader(
  Type.Object({
    title: Type.Optional(
      Type.String({ description: 'full-text search: every word must match', examples: ['club'] }),
    ),
    genres: Type.Optional(
      Type.String({
        description: 'comma-separated; a movie must have all of them',
        examples: ['drama,sci-fi'],
      }),
    ),
    page: Type.Optional(Type.Integer(PAGE)),
    page_size: Type.Optional(Type.Integer(PAGE_SIZE)),
    sort: Type.Optional(
      Type.Union(
        SORT_SAFELIST.map((value) => Type.Literal(value)),
        { description: '"-" sorts descending; ties are broken by ascending id', default: 'id' },
      ),
    ),
  }),
  readMovieListQuery,
);

export type MovieListQuery = Readonly<{
  title: string;
  genres: string[];
  page: number;
  pageSize: number;
  sort: Sort;
}>;

// The filters and order of a list, without its page (an export takes every page).
export type MovieFilters = Pick<MovieListQuery, 'title' | 'genres' | 'sort'>;

export type Metadata =
  | Record<string, never>
  | { current_page: number; page_size: number; first_page: number; last_page: number; total_records: number };

// The book's wording for a maximum: "100", "10 million".
const spelled = (n: number) => (n % 1_000_000 === 0 ? `${n / 1_000_000} million` : String(n));

// Go's strconv.Atoi, then the schema's range, with the book's messages.
function readInt(qs: RawPart, key: string, range: Range, v: Validator): number {
  const text = first(qs[key]) ?? '';
  if (text === '') return range.default;
  const n = parseInt64(text);
  if (n === undefined) {
    v.check(false, key, 'must be an integer value');
    return range.default;
  }
  return Number(n);
}

export function readMovieListQuery(qs: RawPart): MovieListQuery {
  const v = new Validator();
  const genres = first(qs.genres) ?? '';
  const query = {
    title: first(qs.title) ?? '',
    genres: genres === '' ? [] : genres.split(','),
    page: readInt(qs, 'page', PAGE, v),
    pageSize: readInt(qs, 'page_size', PAGE_SIZE, v),
    sort: (first(qs.sort) || 'id') as Sort,
  };
  v.check(query.page >= PAGE.minimum, 'page', 'must be greater than zero');
  v.check(query.page <= PAGE.maximum, 'page', `must be a maximum of ${spelled(PAGE.maximum)}`);
  v.check(query.pageSize >= PAGE_SIZE.minimum, 'page_size', 'must be greater than zero');
  v.check(
    query.pageSize <= PAGE_SIZE.maximum,
    'page_size',
    `must be a maximum of ${spelled(PAGE_SIZE.maximum)}`,
  );
  v.check(SORT_SAFELIST.includes(query.sort), 'sort', 'invalid sort value');
  v.check(isStorable(query.title), 'title', NUL_MESSAGE);
  v.check(isStorable(genres), 'genres', NUL_MESSAGE);
  v.assertValid();
  return query;
}

export function calculateMetadata(totalRecords: number, page: number, pageSize: number): Metadata {
  if (totalRecords === 0) return {};
  return {
    current_page: page,
    page_size: pageSize,
    first_page: 1,
    last_page: Math.ceil(totalRecords / pageSize),
    total_records: totalRecords,
  };
}
