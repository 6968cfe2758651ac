// The list statements' generic plans, on a table filled moments ago and never analysed:
// the state the benchmark (and a fresh production import) queries in. PostgreSQL switches a
// named prepared statement to its generic plan after five executions, so that is the plan
// that serves nearly every request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import type { MovieListQuery } from '../src/movies/filters.ts';
import { listMoviesStatement } from '../src/movies/movies.sql.ts';
import { generateMovies, seedMovies } from '../src/movies/seed.ts';
import { outboxStatements } from '../src/realtime/events.sql.ts';
import { buildTestApp } from './helpers.ts';

const { db } = await buildTestApp();
await db.query('ALTER TABLE movies SET (autovacuum_enabled = off)');
await seedMovies(db, generateMovies(2000));

type PlanNode = {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Parent Relationship'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
};

// The scans of the page's rows: the plan without its InitPlans (the count, the check of
// an earlier count) and the scan of their one-row result.
function scans(node: PlanNode): string[] {
  const own =
    node['Node Type'].endsWith('Scan') && !['Subquery Scan', 'CTE Scan'].includes(node['Node Type'])
      ? [`${node['Node Type']}${node['Index Name'] ? ` ${node['Index Name']}` : ''}`]
      : [];
  const children = (node.Plans ?? []).filter((child) => child['Parent Relationship'] !== 'InitPlan');
  return [...own, ...children.flatMap(scans)];
}

// The scans of the count: the one aggregate of the plan, wherever it sits.
function countScans(node: PlanNode): string[] {
  if (node['Node Type'] === 'Aggregate') return (node.Plans ?? []).flatMap(scans);
  return (node.Plans ?? []).flatMap(countScans);
}

async function genericPlan(q: MovieListQuery): Promise<PlanNode> {
  const { text, values } = listMoviesStatement(q, null);
  const client = await db.connect();
  try {
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(`PREPARE list_movies AS ${text}`);
    const literals = values.map((v) =>
      v === null ? 'NULL' : client.escapeLiteral(Array.isArray(v) ? `{${v.join(',')}}` : String(v)),
    );
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) EXECUTE list_movies(${literals.join(', ')})`,
    );
    return (rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan;
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
  const plan = await genericPlan(query({ title: 'silent', genres: ['drama'] }));
  const combined = ['Bitmap Heap Scan', 'Bitmap Index Scan movies_title_genres_idx'];
  assert.deepEqual(scans(plan), combined);
  assert.deepEqual(countScans(plan), combined);
});

test('when filtering by title alone, then the generic plan searches a title index', async () => {
  const plan = scans(await genericPlan(query({ title: 'silent' })));
  assert.equal(plan[0], 'Bitmap Heap Scan');
  assert.match(plan[1] ?? '', /^Bitmap Index Scan movies_title(_genres)?_idx$/);
});

test('when listing unfiltered by year or title, either way, then the page reads its rows in index order', async () => {
  for (const [sort, index] of [
    ['-year', 'movies_year_idx'],
    ['year', 'movies_year_idx'],
    ['title', 'movies_title_order_idx'],
    ['-title', 'movies_title_order_idx'],
    ['-id', 'movies_pkey'],
  ] as const) {
    const plan = scans(await genericPlan(query({ sort, pageSize: 100 })));
    assert.match(plan.join(', '), new RegExp(`^Index Scan( Backward)? ${index}$`), sort);
  }
});

// Every scan of the plan, each with its index or table.
function allScans(node: PlanNode): string[] {
  return [
    ...(node['Node Type'].endsWith('Scan')
      ? [`${node['Node Type']} ${node['Index Name'] ?? node['Relation Name'] ?? ''}`]
      : []),
    ...(node.Plans ?? []).flatMap(allScans),
  ];
}

// Every InitPlan's scans: the count and the check of an earlier count.
function initPlanScans(node: PlanNode): string[] {
  return (node.Plans ?? []).filter((child) => child['Parent Relationship'] === 'InitPlan').flatMap(allScans);
}

test('when checking an earlier count, then the generic plan reads the outbox by index only', async () => {
  const plan = initPlanScans(await genericPlan(query({ sort: '-year', pageSize: 100 })));
  const outbox = plan.filter(
    (scan) => scan.includes('movie_events') && !scan.includes('movie_events_pruned'),
  );
  assert.ok(outbox.length >= 2, plan.join(', '));
  for (const scan of outbox) assert.match(scan, /^Index (Only )?Scan( Backward)? movie_events_xid_id_idx$/);
});

test('when the feed reads after a bulk import its statistics have not seen, then every scan of the outbox is by index', async () => {
  await db.query('ALTER TABLE movie_events SET (autovacuum_enabled = off)');
  await db.query(
    `INSERT INTO movie_events (type, movie_id, payload)
     SELECT 'movie.created', n, '{}'::jsonb FROM generate_series(1, 100000) AS n`,
  );
  const { rows: newest } = await db.query<{ xid: string }>('SELECT max(xid)::text AS xid FROM movie_events');
  const client = await db.connect();
  try {
    for (const mode of ['force_custom_plan', 'force_generic_plan']) {
      await client.query(`SET plan_cache_mode = ${mode}`);
      await client.query(`PREPARE feed AS ${outboxStatements('movie_events').selectAfter}`);
      const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        `EXPLAIN (FORMAT JSON) EXECUTE feed('${newest[0]?.xid}', 0, 500)`,
      );
      await client.query('DEALLOCATE feed');
      const plan = (rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan;
      const outbox = allScans(plan).filter((scan) => / movie_events$| movie_events_/.test(scan));
      assert.ok(outbox.length >= 2, `${mode}: ${allScans(plan).join(', ')}`);
      for (const scan of outbox)
        assert.match(scan, /^Index (Only )?Scan( Backward)? movie_events_xid_id_idx$/, mode);
    }
  } finally {
    await client.query('RESET plan_cache_mode');
    client.release();
  }
});

test('when the unfiltered page is read again and again, then PostgreSQL plans it once, not on every call', async () => {
  // A connection of its own: the plan counters are per connection and statement.
  const client = new pg.Client({ connectionString: db.options.connectionString });
  await client.connect();
  try {
    for (const sort of ['-year', 'title', '-id'] as const) {
      for (let call = 0; call < 10; call++)
        await client.query(listMoviesStatement(query({ sort, pageSize: 100 }), null));
    }
    const { rows } = await client.query<{ name: string; generic_plans: string; custom_plans: string }>(
      "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE 'list-movies-%' ORDER BY name",
    );
    assert.equal(rows.length, 3);
    for (const row of rows) {
      assert.ok(Number(row.custom_plans) <= 5, `${row.name}: ${row.custom_plans} custom plans of 10 calls`);
      assert.ok(
        Number(row.generic_plans) >= 5,
        `${row.name}: ${row.generic_plans} generic plans of 10 calls`,
      );
    }
  } finally {
    await client.end();
  }
});
