// The total_records of a list stays exact while the count of its filters is reused: every
// change the statement's snapshot sees and the earlier count did not (committed after it,
// committed while it was counted, pruned from the outbox since) makes it count again, and
// so does a snapshot older than the count's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MovieListQuery } from '../src/movies/filters.ts';
import * as sql from '../src/movies/movies.sql.ts';
import { pruneEvents } from '../src/realtime/events.ts';
import { MOVIES } from '../src/realtime/topics.ts';
import { buildTestApp, createMovie, untilPrunable } from './helpers.ts';

const { api, db } = await buildTestApp();
for (let i = 0; i < 5; i++) await createMovie(api, { title: `Counted ${i}`, genres: ['drama'] });

async function totals(query = '') {
  const res = await api(`/v1/movies?page_size=2${query}`);
  assert.equal(res.statusCode, 200);
  return (res.json() as { metadata: { total_records?: number } }).metadata.total_records;
}

const FIELDS = { title: 'Uncommitted', year: 2001, runtime: 90, genres: ['drama'] };

test('when movies are created, changed and deleted, then each list counts them at once', async () => {
  assert.equal(await totals(), 5);
  assert.equal(await totals(), 5);
  const created = await createMovie(api, { title: 'Sixth', genres: ['comedy'] });
  assert.equal(await totals(), 6);
  assert.equal(await totals('&genres=comedy'), 1);
  const changed = await api({
    method: 'PATCH',
    url: `/v1/movies/${created.id}`,
    payload: { genres: ['drama'] },
  });
  assert.equal(changed.statusCode, 200);
  assert.equal(await totals('&genres=comedy'), undefined);
  assert.equal(await totals('&genres=drama'), 6);
  assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${created.id}` })).statusCode, 200);
  assert.equal(await totals(), 5);
  assert.equal(await totals('&genres=drama'), 5);
});

test('when a change was running while the total was counted, then its commit is counted', async () => {
  const before = (await totals()) as number;
  const writer = await db.connect();
  try {
    await writer.query('BEGIN');
    await sql.insertMovie(writer, FIELDS);
    // A later change commits first: the total is counted again, the running one not in it.
    await createMovie(api, { title: 'Committed first' });
    assert.equal(await totals(), before + 1);
    await writer.query('COMMIT');
  } finally {
    writer.release();
  }
  assert.equal(await totals(), before + 2);
});

test('when a snapshot is older than the earlier count, then it counts what it sees', async () => {
  const query: MovieListQuery = { title: '', genres: [], page: 1, pageSize: 2, sort: 'id' };
  const writer = await db.connect();
  const reader = await db.connect();
  try {
    // The reader's snapshot sees the writer running; the later count sees it committed.
    await writer.query('BEGIN');
    await sql.insertMovie(writer, FIELDS);
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const seen = await sql.selectMovies(reader, query, undefined);
    await writer.query('COMMIT');
    const newer = await sql.selectMovies(db, query, undefined);
    assert.equal(newer.total, seen.total + 1);
    const again = await sql.selectMovies(reader, query, newer.counted);
    assert.equal(again.total, seen.total);
    await createMovie(api, { title: 'After the reader' });
    const newest = await sql.selectMovies(db, query, undefined);
    assert.equal((await sql.selectMovies(reader, query, newest.counted)).total, seen.total);
    await reader.query('COMMIT');
  } finally {
    writer.release();
    reader.release();
  }
});

test('when the event of a later change was pruned, then the change is still counted', async () => {
  const before = (await totals()) as number;
  assert.equal(await totals(), before);
  await createMovie(api, { title: 'Pruned at once' });
  const { rows } = await db.query<{ id: string }>('SELECT max(id) AS id FROM movie_events');
  await untilPrunable(db, MOVIES, Number(rows[0]?.id));
  assert.ok((await pruneEvents(db, MOVIES, new Date(Date.now() + 60_000))) > 0);
  assert.equal((await db.query('SELECT 1 FROM movie_events')).rowCount, 0);
  assert.equal(await totals(), before + 1);
});

test('when nothing changed, then the earlier count is reused', async () => {
  const query: MovieListQuery = { title: '', genres: [], page: 1, pageSize: 2, sort: 'id' };
  const first = await sql.selectMovies(db, query, undefined);
  assert.ok(first.counted);
  const second = await sql.selectMovies(db, query, first.counted);
  assert.equal(second.counted, undefined);
  assert.equal(second.total, first.total);
});
