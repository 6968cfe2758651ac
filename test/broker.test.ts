// The broker module against a real rabbitmq-server (one for the file): the relay publishes
// every committed movie and product event with its type as routing key, the SSE body, a
// message id, persistent and in commit order; commands from the command queue are applied
// once through the HTTP routes' use case, or dead-lettered with their reason; pruning keeps
// what the relay has not published.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPool } from '../src/platform/db.ts';
import { saveDurablePosition } from '../src/realtime/consumers.ts';
import { pruneEvents } from '../src/realtime/events.ts';
import { MOVIES } from '../src/realtime/topics.ts';
import { collect, commandHandlerOf, connect, deadLetters, sendCommands } from './broker-clients.ts';
import { buildTestApp, captureLogger, createMovie, createUser, type TestApp, waitFor } from './helpers.ts';
import { startRabbitmqServer } from './rabbitmq-server.ts';

const rabbit = await startRabbitmqServer();
const client = connect(rabbit.url);
const events = await collect(client, 'test-events');
const t = await buildTestApp({ flags: ['-amqp-url', rabbit.url, '-amqp-relay-poll', '100ms'] });

const metricsText = async (app: TestApp['app']) =>
  (await app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).body;

await waitFor('the relay to lead', async () =>
  (await metricsText(t.app)).includes('greenlight_broker_relay_leader 1'),
);

const movieCount = async (title: string) =>
  Number((await t.db.query('SELECT count(*) FROM movies WHERE title = $1', [title])).rows[0].count);

test('when movies and products change, then each event reaches the exchange once, as SSE shows it, in commit order per subject', async () => {
  const movie = await createMovie(t.api, { title: 'Relayed' });
  for (const year of [2001, 2002, 2003]) {
    const res = await t.api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { year } });
    assert.equal(res.statusCode, 200);
  }
  assert.equal((await t.api({ method: 'DELETE', url: `/v1/movies/${movie.id}` })).statusCode, 200);
  const product = await t.app.inject({
    method: 'POST',
    url: '/api/v1/products',
    headers: { authorization: `Bearer ${t.token}` },
    payload: { name: 'Relay', price: 10, stock: 1 },
  });
  assert.equal(product.statusCode, 201);
  const { rows } = await t.db.query<{ id: string; type: string }>(
    'SELECT id::text, type FROM movie_events WHERE movie_id = $1 ORDER BY xid, id',
    [movie.id],
  );
  assert.equal(rows.length, 5);
  const ours = () =>
    events.messages.filter((m) => (m.body.movie as { id?: number } | undefined)?.id === movie.id);
  // Generous: the relay publishes only what no running transaction can still precede, and
  // under the whole suite a writer in another test's database (the cluster is shared) can
  // hold that back for seconds; this test is about what arrives, A1 measures how fast.
  await waitFor('the five movie events', () => ours().length >= 5, 30_000).catch(async (err: Error) => {
    // Which transactions held the horizon back, so that a failure names them.
    const { rows: oldest } = await t.db.query(
      `SELECT datname, state, xact_start, left(query, 120) AS query FROM pg_stat_activity
       WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL ORDER BY xact_start LIMIT 5`,
    );
    throw new Error(`${err.message}; the oldest transactions: ${JSON.stringify(oldest)}`);
  });
  await waitFor(
    'the product event',
    () => events.messages.some((m) => m.routingKey === 'product.created'),
    30_000,
  );
  const received = ours();
  assert.deepEqual(
    received.map((m) => [m.messageId, m.routingKey]),
    rows.map((row) => [`movies-${row.id}`, row.type]),
  );
  assert.deepEqual(
    received.map((m) => (m.body.movie as { version: number }).version),
    [1, 2, 3, 4, 4],
  );
  const [first] = received;
  assert.ok(first);
  assert.equal(first.contentType, 'application/json');
  assert.equal(first.durable, true);
  assert.equal(first.type, 'movie.created');
  assert.equal(first.headers['x-greenlight-subject'], `movie-${movie.id}`);
  assert.deepEqual(Object.keys(first.body), ['id', 'type', 'occurred_at', 'movie']);
  assert.equal(first.body.id, Number(rows[0]?.id));
  const published = await metricsText(t.app);
  assert.match(published, /greenlight_broker_published_total\{exchange="greenlight.events"\} \d+/);
  assert.match(published, /greenlight_broker_publish_lag_seconds_count\{topic="movies"\} \d+/);
});

const NDJSON = 'application/x-ndjson';
const row = (title: string, year = 2020) =>
  JSON.stringify({ title, year, runtime: '90 mins', genres: ['drama'] });

test('when a good import command is delivered twice, then it is applied once and both are acknowledged', async () => {
  const auth = { authorization: `Bearer ${t.token}` };
  const command = { messageId: 'import-once', type: 'movies.import', headers: auth, contentType: NDJSON };
  const body = `${row('Once A')}\n${row('Once B')}\n`;
  await sendCommands(client, [
    { ...command, body },
    { ...command, body },
  ]);
  await waitFor('the import', async () => (await movieCount('Once B')) === 1);
  await waitFor('both deliveries settled', async () =>
    /greenlight_broker_commands_total\{type="movies.import",outcome="duplicate"\} 1/.test(
      await metricsText(t.app),
    ),
  );
  assert.equal(await movieCount('Once A'), 1);
  assert.equal(await movieCount('Once B'), 1);
  const { rows } = await t.db.query('SELECT type FROM broker_commands WHERE message_id = $1', [
    'import-once',
  ]);
  assert.deepEqual(rows, [{ type: 'movies.import' }]);
});

test('when commands can never succeed, then each is dead-lettered with its reason and nothing is applied', async () => {
  const dead = await deadLetters(client);
  const { token: reader } = await createUser(t.db, { permissions: ['movies:read'] });
  const good = {
    type: 'movies.import',
    headers: { authorization: `Bearer ${t.token}` },
    contentType: NDJSON,
  };
  await sendCommands(client, [
    { ...good, messageId: 'poison-json', body: `${row('Poison 1')}\n{"title": \n` },
    { ...good, messageId: 'poison-invalid', body: `${row('Poison 2')}\n${row('Poison 3', 1500)}\n` },
    { ...good, messageId: 'poison-type', type: 'movies.explode', body: row('Poison 4') },
    {
      ...good,
      messageId: 'poison-token',
      headers: { authorization: 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAA' },
      body: row('Poison 5'),
    },
    {
      ...good,
      messageId: 'poison-permission',
      headers: { authorization: `Bearer ${reader}` },
      body: row('Poison 6'),
    },
    { ...good, messageId: 'poison-anonymous', headers: {}, body: row('Poison 7') },
    { ...good, messageId: 'poison-media', contentType: 'application/pdf', body: row('Poison 8') },
    { ...good, body: row('Poison 9') },
  ]);
  await waitFor('eight dead letters', () => dead.letters.length >= 8, 30_000);
  await dead.close();
  const reasons = Object.fromEntries(dead.letters.map((l) => [l.messageId ?? '(none)', String(l.reason)]));
  assert.match(reasons['poison-json'] ?? '', /rows failed validation.*"line":2/);
  assert.match(reasons['poison-invalid'] ?? '', /"year":"must be greater than 1888"/);
  assert.match(reasons['poison-type'] ?? '', /unknown command type "movies.explode"/);
  assert.equal(reasons['poison-token'], 'invalid or missing authentication token');
  assert.match(reasons['poison-permission'] ?? '', /necessary permissions/);
  assert.match(reasons['poison-anonymous'] ?? '', /authorization or x-api-key header is required/);
  assert.match(reasons['poison-media'] ?? '', /content-type must be/);
  assert.match(reasons['(none)'] ?? '', /message-id is required/);
  const letter = dead.letters.find((l) => l.messageId === 'poison-invalid');
  assert.equal(letter?.body, `${row('Poison 2')}\n${row('Poison 3', 1500)}\n`);
  for (let n = 1; n <= 9; n++) assert.equal(await movieCount(`Poison ${n}`), 0);
  assert.match(
    await metricsText(t.app),
    /greenlight_broker_commands_total\{type="movies.import",outcome="dead"\} [1-9]/,
  );
});

test('when a durable reader has not read events yet, then pruning keeps them while a broker is configured', async () => {
  const other = await buildTestApp();
  for (const title of ['Kept 1', 'Kept 2', 'Kept 3']) await createMovie(other.api, { title });
  const { rows } = await other.db.query<{ id: string; xid: string }>(
    'SELECT id::text, xid::text FROM movie_events ORDER BY xid, id',
  );
  const [first] = rows;
  assert.ok(first && rows.length === 3);
  await saveDurablePosition(other.db, 'broker-relay', MOVIES, {
    xid: BigInt(first.xid),
    id: Number(first.id),
  });
  const future = new Date(Date.now() + 60_000);
  const left = async () => Number((await other.db.query('SELECT count(*) FROM movie_events')).rows[0].count);
  // Pruning reads below the oldest running transaction of the cluster (other files' too), so
  // it may need another round; it never goes past the reader's position.
  const pruneUntil = (count: number, keepDurable: boolean) =>
    waitFor(`${count} events left`, async () => {
      await pruneEvents(other.db, MOVIES, future, { keepDurable });
      return (await left()) === count;
    });
  await pruneUntil(2, true);
  await pruneEvents(other.db, MOVIES, future, { keepDurable: true });
  assert.equal(await left(), 2);
  await pruneUntil(0, false);
});

test('when the database is unreachable, then a command is put back to be retried, not dead-lettered', async () => {
  const { logger, lines } = captureLogger();
  const nowhere = createPool({ ...t.config.db, dsn: 'postgres://greenlight@127.0.0.1:1/greenlight' });
  const handle = commandHandlerOf(t, logger, nowhere);
  try {
    const outcome = await handle({
      messageId: 'transient',
      type: 'movies.import',
      contentType: NDJSON,
      headers: { authorization: `Bearer ${t.token}` },
      body: Buffer.from(row('Transient')),
      redelivered: false,
      attempts: 0,
    });
    assert.deepEqual(outcome, { kind: 'retry', attempt: 1, delayMs: 200 });
    assert.ok(lines.some((line) => line.msg === 'command failed; retrying' && line.attempt === 1));
  } finally {
    await nowhere.end();
  }
});
