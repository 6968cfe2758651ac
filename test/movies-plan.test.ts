// The list statements' generic plans, on a table filled moments ago and never analysed:
// the state the benchmark (and a fresh production import) queries in. PostgreSQL switches a
// named prepared statement to its generic plan after five executions, so that is the plan
// that serves nearly every request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MovieListQuery } from '../src/movies/filters.ts';
import { listMoviesStatement } from '../src/movies/movies.sql.ts';
import { generateMovies, seedMovies } from '../src/movies/seed.ts';
import { buildTestApp } from './helpers.ts';

const { db } = await buildTestApp();
await db.query('ALTER TABLE movies SET (autovacuum_enabled = off)');
await seedMovies(db, generateMovies(2000));

type PlanNode = { 'Node Type': string; 'Index Name'?: string; Plans?: PlanNode[] };

function scans(node: PlanNode): string[] {
  const own = node['Node Type'].endsWith('Scan')
    ? [`${node['Node Type']}${node['Index Name'] ? ` ${node['Index Name']}` : ''}`]
    : [];
  return [...own, ...(node.Plans ?? []).flatMap(scans)];
}

async function genericPlanScans(q: MovieListQuery): Promise<string[]> {
  const { text, values } = listMoviesStatement(q);
  const client = await db.connect();
  try {
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(`PREPARE list_movies AS ${text}`);
    const literals = values.map((v) =>
      client.escapeLiteral(Array.isArray(v) ? `{${v.join(',')}}` : String(v)),
    );
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) EXECUTE list_movies(${literals.join(', ')})`,
    );
    return scans((rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan);
  } finally {
    await client.query('DEALLOCATE ALL');
    await client.query('RESET plan_cache_mode');
    client.release();
  }
}

const query = (fields: Partial<MovieListQuery>): MovieListQuery => ({
  title: '',
  genres: [],
  page: 1,
  pageSize: 20,
  sort: '-year',
  ...fields,
});

test('when the table was never analysed, then it really has no statistics', async () => {
  const { rows } = await db.query(
    "SELECT reltuples FROM pg_class WHERE relname = 'movies' AND reltuples < 0",
  );
  assert.equal(rows.length, 1);
});

test('when filtering by title and genres, then the generic plan searches the combined GIN index only', async () => {
  assert.deepEqual(await genericPlanScans(query({ title: 'silent', genres: ['drama'] })), [
    'Bitmap Heap Scan',
    'Bitmap Index Scan movies_title_genres_idx',
  ]);
});

test('when filtering by title alone, then the generic plan searches a title index', async () => {
  const plan = await genericPlanScans(query({ title: 'silent' }));
  assert.equal(plan[0], 'Bitmap Heap Scan');
  assert.match(plan[1] ?? '', /^Bitmap Index Scan movies_title(_genres)?_idx$/);
});
