// SQL for the movies table: explicit columns, $n parameters, RETURNING instead of a second
// round trip, optimistic locking on version. Zero rows become domain errors here.
import type { Queryable } from '../platform/db.ts';
import { EditConflictError, NotFoundError } from '../platform/errors.ts';
import {
  eventTraceContext,
  lockSubject,
  type Outbox,
  recordEvents,
  unchangedSince,
} from '../platform/outbox.ts';
import type { MovieFilters, MovieListQuery } from './filters.ts';
import type { ListedMovie, Movie, MovieFields } from './movie.ts';

type MovieRow = {
  id: number;
  created_at: Date;
  title: string;
  year: number;
  runtime: number;
  genres: string[];
  version: number;
};

function toMovie(row: MovieRow): Movie {
  return {
    id: row.id,
    createdAt: row.created_at,
    title: row.title,
    year: row.year,
    runtime: row.runtime,
    genres: row.genres,
    version: row.version,
  };
}

// Every change writes its event to the movie_events outbox in the same statement
// (src/platform/outbox.ts); streams are woken on this channel after the commit.
export const MOVIE_EVENTS_CHANNEL = 'movie_events';
const MOVIE_EVENTS: Outbox = {
  table: 'movie_events',
  subjectColumn: 'movie_id',
  lockKey: 7_235_016,
};
const MOVIE_JSON = `json_build_object('id', m.id, 'title', m.title, 'year', m.year,
  'runtime', m.runtime, 'genres', m.genres, 'version', m.version)`;
const recordEvent = (type: string, payload: string, traceParam: string) =>
  recordEvents(MOVIE_EVENTS, type, payload, traceParam);

const INSERT_MOVIE = `
  WITH m AS (
    INSERT INTO movies (title, year, runtime, genres)
    VALUES ($1, $2, $3, $4)
    RETURNING id, created_at, title, year, runtime, genres, version
  ),${recordEvent('movie.created', MOVIE_JSON, '$5')}
  SELECT m.id, m.created_at, m.title, m.year, m.runtime, m.genres, m.version FROM m`;

const SELECT_MOVIE = `
  SELECT id, created_at, title, year, runtime, genres, version
  FROM movies
  WHERE id = $1`;

const UPDATE_MOVIE = `
  WITH m AS (
    UPDATE movies
    SET title = $1, year = $2, runtime = $3, genres = $4, version = version + 1
    WHERE id = $5 AND version = $6 AND ${lockSubject(MOVIE_EVENTS, '$5')}
    RETURNING id, title, year, runtime, genres, version
  ),${recordEvent('movie.updated', MOVIE_JSON, '$7')}
  SELECT m.version FROM m`;

const DELETE_MOVIE = `
  WITH m AS (
    DELETE FROM movies WHERE id = $1 AND ${lockSubject(MOVIE_EVENTS, '$1')} RETURNING id, version
  ),${recordEvent('movie.deleted', "json_build_object('id', m.id, 'version', m.version)", '$2')}
  SELECT m.id FROM m`;

// ORDER BY cannot take a parameter, so each safelisted sort maps to fixed SQL text.
const ORDER_BY: Readonly<Record<MovieListQuery['sort'], string>> = {
  id: 'id ASC',
  title: 'title ASC, id ASC',
  year: 'year ASC, id ASC',
  runtime: 'runtime ASC, id ASC',
  '-id': 'id DESC',
  '-title': 'title DESC, id ASC',
  '-year': 'year DESC, id ASC',
  '-runtime': 'runtime DESC, id ASC',
};

// The book writes the optional filters as `(… OR $1 = '')`, which a prepared statement's
// generic plan cannot serve from the GIN indexes. We prepare one statement per combination
// of filters present instead, each with plain conditions the planner always can index.
function filterConditions(q: MovieFilters, values: unknown[]): string[] {
  const conditions: string[] = [];
  if (q.title !== '') {
    values.push(q.title);
    conditions.push(`to_tsvector('simple', title) @@ plainto_tsquery('simple', $${values.length})`);
  }
  if (q.genres.length > 0) {
    values.push(q.genres);
    conditions.push(`genres @> $${values.length}`);
  }
  return conditions;
}

const filterKey = (q: MovieFilters) =>
  `${q.title !== '' ? 't' : ''}${q.genres.length > 0 ? 'g' : ''}-${q.sort}`;

// A page and the number of movies its filters match, counted in the statement's snapshot,
// as the book's `count(*) OVER()` did. The window computed every matching row (to_json of
// its genres included) before sorting them for the page: 26 ms of PostgreSQL's CPU a page
// once the table held 22,000 movies. Now the page reads its rows alone (by index where the
// sort has one) and formats only those, and the total is counted only when `since` (the
// snapshot of an earlier count of the same filters) is NULL or no longer sees what this
// statement sees (unchangedSince); otherwise `total` is NULL and the earlier count stands.
export function listMoviesStatement(
  q: MovieListQuery,
  since: string | null,
): { name: string; text: string; values: unknown[] } {
  const values: unknown[] = [];
  const conditions = filterConditions(q, values);
  values.push(q.pageSize, (q.page - 1) * q.pageSize, since);
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
  const n = values.length;
  const unchanged = unchangedSince(MOVIE_EVENTS, `$${n}`);
  // Without filters, LIMIT and OFFSET are subqueries, so that a plan made for the values at
  // hand costs what the generic one does: with plain parameters that page was planned again on
  // every call (0.17-0.19 ms of PostgreSQL's CPU, as much as running it), because the generic
  // plan, the same plan, was estimated for an unknown limit and so looked dearer. With filters
  // the best plan depends on how many rows match and how many the page needs: plain parameters.
  const limit =
    where === ''
      ? `LIMIT (SELECT $${n - 2}::bigint) OFFSET (SELECT $${n - 1}::bigint)`
      : `LIMIT $${n - 2} OFFSET $${n - 1}`;
  return {
    name: `list-movies-${filterKey(q)}`,
    // No created_at: a list never shows it. The genres come as JSON: JSON.parse reads them in
    // a fraction of the time the driver's text[] parser takes (3.9 % of the page's CPU).
    text: `
      WITH page AS (
        SELECT id, title, year, runtime, genres, version
        FROM movies
        ${where}
        ORDER BY ${ORDER_BY[q.sort]}
        ${limit}
      ),
      counted AS MATERIALIZED (
        SELECT CASE WHEN ${unchanged} THEN NULL ELSE (SELECT count(*) FROM movies ${where}) END AS total
      )
      SELECT counted.total,
             CASE WHEN counted.total IS NULL THEN NULL ELSE pg_current_snapshot()::text END AS snapshot,
             id, title, year, runtime, to_json(genres) AS genres, version
      FROM page CROSS JOIN counted
      ORDER BY ${ORDER_BY[q.sort]}`,
    values,
  };
}

// Where the previous batch of an export ended: the sort column's value and the id.
export type ExportPosition = Readonly<{ value: string | number; id: number }>;

// One batch of an export: the list's filters and order, continued after `after` (keyset
// pagination), so each batch is a short indexed query and no statement stays open.
export function exportMoviesStatement(
  q: MovieFilters,
  after: ExportPosition | null,
  limit: number,
): { name: string; text: string; values: unknown[] } {
  const values: unknown[] = [];
  const conditions = filterConditions(q, values);
  if (after !== null) {
    const column = q.sort.replace('-', '');
    const beyond = q.sort.startsWith('-') ? '<' : '>';
    values.push(after.id);
    const id = `$${values.length}`;
    if (column === 'id') {
      conditions.push(`id ${beyond} ${id}`);
    } else {
      values.push(after.value);
      const value = `$${values.length}`;
      conditions.push(`(${column} ${beyond} ${value} OR (${column} = ${value} AND id > ${id}))`);
    }
  }
  values.push(limit);
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
  return {
    name: `export-movies-${filterKey(q)}-${after === null ? 'first' : 'next'}`,
    text: `
      SELECT id, created_at, title, year, runtime, genres, version
      FROM movies
      ${where}
      ORDER BY ${ORDER_BY[q.sort]}
      LIMIT $${values.length}`,
    values,
  };
}

export async function selectMovieBatch(
  db: Queryable,
  q: MovieFilters,
  after: ExportPosition | null,
  limit: number,
): Promise<Movie[]> {
  const { rows } = await db.query<MovieRow>(exportMoviesStatement(q, after, limit));
  return rows.map(toMovie);
}

export async function insertMovie(db: Queryable, fields: MovieFields): Promise<Movie> {
  const { rows } = await db.query<MovieRow>({
    name: 'insert-movie',
    text: INSERT_MOVIE,
    values: [fields.title, fields.year, fields.runtime, fields.genres, eventTraceContext()],
  });
  return toMovie(rows[0] as MovieRow);
}

export async function selectMovie(db: Queryable, id: string): Promise<Movie> {
  const { rows } = await db.query<MovieRow>({ name: 'select-movie', text: SELECT_MOVIE, values: [id] });
  if (rows.length === 0) throw new NotFoundError();
  return toMovie(rows[0] as MovieRow);
}

// Saves `movie` if nobody changed it since it was read at `movie.version`.
export async function updateMovie(db: Queryable, movie: Movie): Promise<Movie> {
  const { rows } = await db.query<{ version: number }>({
    name: 'update-movie',
    text: UPDATE_MOVIE,
    values: [
      movie.title,
      movie.year,
      movie.runtime,
      movie.genres,
      movie.id,
      movie.version,
      eventTraceContext(),
    ],
  });
  if (rows.length === 0) throw new EditConflictError();
  return { ...movie, version: (rows[0] as { version: number }).version };
}

export async function deleteMovie(db: Queryable, id: string): Promise<void> {
  const { rowCount } = await db.query({
    name: 'delete-movie',
    text: DELETE_MOVIE,
    values: [id, eventTraceContext()],
  });
  if (rowCount === 0) throw new NotFoundError();
}

// A count of the movies some filters match and the snapshot it was taken in.
export type CountedTotal = Readonly<{ total: number; snapshot: string }>;

// `counted`: an earlier count of the same filters, reused when nothing changed since.
// `total` is 0 when the page is empty (the book's metadata is then empty).
export async function selectMovies(
  db: Queryable,
  q: MovieListQuery,
  counted: CountedTotal | undefined,
): Promise<{ movies: ListedMovie[]; total: number; counted?: CountedTotal }> {
  type Row = Omit<MovieRow, 'created_at'> & { total: number | null; snapshot: string | null };
  const { rows } = await db.query<Row>(listMoviesStatement(q, counted?.snapshot ?? null));
  const first = rows[0];
  const recounted =
    first?.total != null && first.snapshot !== null
      ? { total: first.total, snapshot: first.snapshot }
      : undefined;
  return {
    movies: rows.map((row) => ({
      id: row.id,
      title: row.title,
      year: row.year,
      runtime: row.runtime,
      genres: row.genres,
      version: row.version,
    })),
    total: first === undefined ? 0 : (recounted?.total ?? counted?.total ?? 0),
    ...(recounted ? { counted: recounted } : {}),
  };
}

// Many movies in one statement (seeding, benchmarks, imports): one array per column, each
// movie's genres as JSON text since unnest cannot take an array of arrays of varying length.
// Each movie gets its movie.created event.
const INSERT_MOVIES = `
  WITH m AS (
    INSERT INTO movies (title, year, runtime, genres)
    SELECT r.title, r.year, r.runtime, ARRAY(SELECT jsonb_array_elements_text(r.genres::jsonb))
    FROM unnest($1::text[], $2::integer[], $3::integer[], $4::text[]) AS r(title, year, runtime, genres)
    RETURNING id, title, year, runtime, genres, version
  ),${recordEvent('movie.created', MOVIE_JSON, '$5')}
  SELECT count(*)::integer AS count FROM m`;

export async function insertMovies(db: Queryable, movies: readonly MovieFields[]): Promise<number> {
  const { rows } = await db.query<{ count: number }>({
    name: 'insert-movies',
    text: INSERT_MOVIES,
    values: [
      movies.map((m) => m.title),
      movies.map((m) => m.year),
      movies.map((m) => m.runtime),
      movies.map((m) => JSON.stringify(m.genres)),
      eventTraceContext(),
    ],
  });
  return rows[0]?.count ?? 0;
}

export async function countMovies(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ count: number }>('SELECT count(*) AS count FROM movies');
  return rows[0]?.count ?? 0;
}

const MOVIE_STATS = `
  SELECT count(*) AS total, count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS added_last_day,
         max(created_at) AS last_added_at
  FROM movies`;

export async function selectMovieStats(
  db: Queryable,
): Promise<{ total: number; addedLastDay: number; lastAddedAt: Date | null }> {
  const { rows } = await db.query<{ total: number; added_last_day: number; last_added_at: Date | null }>(
    MOVIE_STATS,
  );
  const row = rows[0] as { total: number; added_last_day: number; last_added_at: Date | null };
  return { total: row.total, addedLastDay: row.added_last_day, lastAddedAt: row.last_added_at };
}
