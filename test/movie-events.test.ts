// The movie_events outbox as the database holds it: one row per committed change, with the id
// of its transaction, and wake-ups sent only after commits.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import * as sql from '../src/movies/movies.sql.ts';
import { createPool } from '../src/platform/db.ts';
import { Migrator } from '../src/platform/migrations.ts';
import { endedBefore, lastPosition, resumePoint } from '../src/realtime/events.ts';
import { MOVIES } from '../src/realtime/topics.ts';
import { buildTestApp, createMovie, createTestDatabase } from './helpers.ts';

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

test('when events were written before migration 000021, then they keep their id order before every new event, and resumes from them stay exact', async () => {
  const dsn = await createTestDatabase({ template: false });
  const migrator = new Migrator(dsn);
  await migrator.goto(20);
  const client = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  try {
    await client.query(
      `INSERT INTO movie_events (type, movie_id, payload)
       SELECT 'movie.created', n, json_build_object('id', n) FROM generate_series(1, 3) n`,
    );
    await client.query('UPDATE movie_events_pruned SET up_to = 0');
    await migrator.up();
    await client.query(
      "INSERT INTO movie_events (type, movie_id, payload) VALUES ('movie.created', 4, '{\"id\":4}')",
    );
    const { rows } = await client.query<{ id: string; xid: string }>(
      'SELECT id, xid::text AS xid FROM movie_events ORDER BY movie_events.xid, id',
    );
    assert.deepEqual(
      rows.map((r) => Number(r.id)),
      [1, 2, 3, 4],
    );
    assert.deepEqual(
      rows.slice(0, 3).map((r) => r.xid),
      ['0', '0', '0'],
    );
    assert.ok(BigInt(rows[3]?.xid ?? 0) > 0n);
    assert.deepEqual(await resumePoint(client, MOVIES, 2), { gap: null, after: { xid: 0n, id: 2 } });
  } finally {
    await client.end();
  }
});

test('when a snapshot is read, then an event counts as ended below its xmin, or below its xmax when it was not running', () => {
  const ended = endedBefore('100:105:100,103');
  const at = (xid: number) => ended.has({ xid: BigInt(xid), id: 1 });
  assert.deepEqual([99, 100, 101, 102, 103, 104, 105, 106].map(at), [
    true,
    false,
    true,
    true,
    false,
    true,
    false,
    false,
  ]);
  assert.equal(endedBefore('7:7:').has({ xid: 6n, id: 1 }), true);
  assert.equal(endedBefore('7:7:').has({ xid: 7n, id: 1 }), false);
  assert.equal(ended.xmin, 100n);
});

test('when transaction ids cross a power of ten, then the last position is the greatest as a number, not as text', async () => {
  const client = createPool({
    dsn: await createTestDatabase(),
    maxOpenConns: 1,
    maxIdleTimeMs: 60_000,
    queryTimeoutMs: 3_000,
  });
  try {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO movie_events (type, movie_id, payload, xid)
       VALUES ('movie.created', 1, '{"id":1}', '99'), ('movie.created', 2, '{"id":2}', '100')
       RETURNING id`,
    );
    assert.deepEqual(await lastPosition(client, MOVIES), { xid: 100n, id: Number(rows[1]?.id) });
  } finally {
    await client.end();
  }
});
