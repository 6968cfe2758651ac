// The movie_events outbox as the database holds it: one row per committed change, with the id
// of its transaction, and wake-ups sent only after commits.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import * as sql from '../src/movies/movies.sql.ts';
import { buildTestApp, createMovie } from './helpers.ts';

type EventRow = { id: string; type: string; movie_id: string; payload: Record<string, unknown> };

async function listen(dsn: string, t: { after: (fn: () => Promise<void>) => void }) {
  const client = new pg.Client({ connectionString: dsn });
  await client.connect();
  const ids: string[] = [];
  client.on('notification', (n) => ids.push(n.payload as string));
  // The test database is dropped with this connection still open.
  client.on('error', () => {});
  await client.query(`LISTEN ${sql.MOVIE_EVENTS_CHANNEL}`);
  t.after(() => client.end());
  return ids;
}

async function waitFor(ids: string[], count: number) {
  const deadline = Date.now() + 1_000;
  while (ids.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

test('when a movie is created, updated and deleted, then each change has its outbox row with its transaction id, in order, and listeners are woken after the commits', async (t) => {
  const { api, db, dsn } = await buildTestApp();
  const notified = await listen(dsn, t);
  const movie = await createMovie(api, { title: 'Arrival' });
  const patched = await api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { year: 2017 } });
  assert.equal(patched.statusCode, 200);
  const stale = await api({
    method: 'PATCH',
    url: `/v1/movies/${movie.id}`,
    payload: { year: 2018 },
    headers: { 'x-expected-version': '1' },
  });
  assert.equal(stale.statusCode, 409);
  assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${movie.id}` })).statusCode, 200);
  assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${movie.id}` })).statusCode, 404);

  const { rows } = await db.query<EventRow & { xid: string }>(
    'SELECT id, xid::text AS xid, type, movie_id, payload FROM movie_events ORDER BY xid, id',
  );
  assert.deepEqual(
    rows.map((r) => [r.type, Number(r.movie_id), r.payload.version]),
    [
      ['movie.created', movie.id, 1],
      ['movie.updated', movie.id, 2],
      ['movie.deleted', movie.id, 2],
    ],
  );
  assert.equal(rows[1]?.payload.year, 2017);
  // One transaction each, so three transaction ids.
  assert.equal(new Set(rows.map((r) => r.xid)).size, 3);
  await waitFor(notified, 1);
  assert.ok(notified.length >= 1);
});

test('when a change is rolled back, or commits through its SQL alone, then nobody is notified: wake-ups are sent by the use case after its commit, never by the writing transaction', async (t) => {
  const { db, dsn } = await buildTestApp();
  const notified = await listen(dsn, t);
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await sql.insertMovie(client, { title: 'Moana', year: 2016, runtime: 107, genres: ['animation'] });
    await client.query('ROLLBACK');
    await sql.insertMovie(client, { title: 'Coco', year: 2017, runtime: 105, genres: ['animation'] });
  } finally {
    client.release();
  }
  await waitFor(notified, 1);
  const { rows } = await db.query<EventRow>('SELECT id, type, payload FROM movie_events');
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.payload.title, 'Coco');
  assert.deepEqual(notified, []);
});
