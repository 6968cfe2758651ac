// Query-string filters for GET /v1/movies, read and validated the book's way.
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

type QueryString = Record<string, string | string[] | undefined>;

// Go's url.Values.Get: the first value of a repeated key, "" when absent.
function first(qs: QueryString, key: string): string {
  const value = qs[key];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}

// Go's strconv.Atoi: optional sign, decimal digits, within int64.
function readInt(qs: QueryString, key: string, fallback: number, v: Validator): number {
  const text = first(qs, key);
  if (text === '') return fallback;
  if (
    !/^[+-]?\d+$/.test(text) ||
    BigInt(text) > 9223372036854775807n ||
    BigInt(text) < -9223372036854775808n
  ) {
    v.check(false, key, 'must be an integer value');
    return fallback;
  }
  return Number(text);
}

export function readMovieListQuery(qs: QueryString): MovieListQuery {
  const v = new Validator();
  const genres = first(qs, 'genres');
  const query = {
    title: first(qs, 'title'),
    genres: genres === '' ? [] : genres.split(','),
    page: readInt(qs, 'page', 1, v),
    pageSize: readInt(qs, 'page_size', 20, v),
    sort: (first(qs, 'sort') || 'id') as Sort,
  };
  v.check(query.page > 0, 'page', 'must be greater than zero');
  v.check(query.page <= 10_000_000, 'page', 'must be a maximum of 10 million');
  v.check(query.pageSize > 0, 'page_size', 'must be greater than zero');
  v.check(query.pageSize <= 100, 'page_size', 'must be a maximum of 100');
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
