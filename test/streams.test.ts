// Change streams against a listening app on its own database, with real SSE (fetch) and
// WebSocket (ws) clients: order and ids, resume, gaps, rollbacks, concurrent writers,
// revocation and slow consumers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { revokePermissions } from '../src/accounts/permissions.sql.ts';
import { deleteTokensForUser, insertToken } from '../src/accounts/tokens.sql.ts';
import { generateToken, SCOPES } from '../src/accounts/tokens.ts';
import * as movies from '../src/movies/movies.sql.ts';
import { pruneEvents } from '../src/realtime/events.ts';
import { MOVIES } from '../src/realtime/topics.ts';
import { buildTestApp, createMovie, createUser, untilPrunable, waitFor } from './helpers.ts';
import { openSse, openWs, type SseEvent, until } from './stream-clients.ts';

const MAX_BUFFERED = 65_536;
const { app, api, db, dsn, token, lines } = await buildTestApp({
  identityCache: true,
  flags: ['-stream-max-buffered', String(MAX_BUFFERED)],
});
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as { port: number };
const base = `http://127.0.0.1:${port}`;
const EVENTS = `${base}/v1/movies/events`;
const WS = `ws://127.0.0.1:${port}/v1/ws`;

async function refusedWs(token?: string): Promise<{ status: number; body: string }> {
  const err = (await openWs(WS, token).then(
    () => assert.fail('the upgrade was accepted'),
    (e: unknown) => e,
  )) as { status: number; body: string };
  return err;
}

const dataOf = (event: SseEvent | undefined) =>
  JSON.parse(event?.data ?? 'null') as { id: number; type: string; movie: Record<string, unknown> };

const lastId = async () =>
  Number((await db.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM movie_events')).rows[0]?.id);

test('when a movie is created, updated and deleted, then an SSE client gets the three events in commit order with their outbox ids', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  assert.equal(sse.status, 200);
  assert.match(sse.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.equal(sse.headers.get('cache-control'), 'no-cache');
  assert.ok(sse.headers.get('x-request-id'));

  const movie = await createMovie(api, { title: 'Arrival', year: 2016 });
  assert.equal(
    (await api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { year: 2017 } })).statusCode,
    200,
  );
  assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${movie.id}` })).statusCode, 200);
  await until(() => sse.events.length >= 3, 'three events');

  const { rows } = await db.query<{ id: string; type: string }>(
    'SELECT id, type FROM movie_events WHERE movie_id = $1 ORDER BY id',
    [movie.id],
  );
  assert.deepEqual(
    sse.events.map((e) => [e.id, e.event]),
    rows.map((r) => [String(r.id), r.type]),
  );
  assert.deepEqual(
    sse.events.map((e) => [dataOf(e).type, dataOf(e).movie.version]),
    [
      ['movie.created', 1],
      ['movie.updated', 2],
      ['movie.deleted', 2],
    ],
  );
  assert.deepEqual(dataOf(sse.events[1]).movie, {
    id: movie.id,
    title: 'Arrival',
    year: 2017,
    runtime: movie.runtime,
    genres: movie.genres,
    version: 2,
  });
  assert.equal(dataOf(sse.events[1]).id, Number(rows[1]?.id));
});

test('when a client resumes with Last-Event-ID (or ?last_event_id= on a first connect), then it gets exactly the events after it, then live ones', async (t) => {
  const before = await lastId();
  const a = await createMovie(api, { title: 'Missed one' });
  const b = await createMovie(api, { title: 'Missed two' });
  const resumed = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => resumed.close());
  const byQuery = await openSse(`${EVENTS}?last_event_id=${before + 1}`, { token });
  t.after(() => byQuery.close());
  await until(() => resumed.events.length >= 2 && byQuery.events.length >= 1, 'the missed events');
  const c = await createMovie(api, { title: 'Live' });
  await until(() => resumed.events.length >= 3 && byQuery.events.length >= 2, 'the live event');
  assert.deepEqual(
    resumed.events.map((e) => dataOf(e).movie.id),
    [a.id, b.id, c.id],
  );
  assert.deepEqual(
    byQuery.events.map((e) => dataOf(e).movie.id),
    [b.id, c.id],
  );
  assert.equal(
    resumed.events.some((e) => e.event === 'gap'),
    false,
  );
});

test('when Last-Event-ID is not a non-negative integer, then the stream is refused with 422 in the envelope', async () => {
  for (const value of ['abc', '-1', '1.5', '99999999999999999']) {
    const res = await fetch(EVENTS, {
      headers: { authorization: `Bearer ${token}`, 'last-event-id': value },
    });
    assert.equal(res.status, 422, value);
    assert.deepEqual(await res.json(), { error: { last_event_id: 'must be a non-negative integer' } });
  }
  const res = await fetch(`${EVENTS}?last_event_id=x`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 422);
});

test('when the events after the requested id were pruned, then a gap event comes first, then what is left', async (t) => {
  const before = await lastId();
  await createMovie(api, { title: 'Pruned' });
  const upTo = await lastId();
  assert.equal(await pruneEvents(db, MOVIES, new Date(Date.now() - 3_600_000)), 0);
  const stored = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM movie_events')).rows[0]?.n);
  assert.ok(stored > 2);
  // Two rows a statement: every event still goes, in steps.
  await untilPrunable(db, MOVIES, upTo);
  assert.equal(await pruneEvents(db, MOVIES, new Date(Date.now() + 60_000), { batch: 2 }), stored);
  const kept = await createMovie(api, { title: 'Kept' });
  const sse = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => sse.close());
  await until(() => sse.events.length >= 2, 'the gap and the kept event');
  assert.deepEqual(sse.events[0], {
    event: 'gap',
    data: JSON.stringify({ last_event_id: before, pruned_up_to: upTo }),
  });
  assert.equal(dataOf(sse.events[1]).movie.id, kept.id);
  const { rows } = await db.query('SELECT id FROM movie_events WHERE id <= $1', [upTo]);
  assert.equal(rows.length, 0);
  // A client that has seen everything pruned is not told of a gap.
  const current = await openSse(EVENTS, { token, headers: { 'last-event-id': String(upTo) } });
  t.after(() => current.close());
  await until(() => current.events.length >= 1, 'the kept event');
  assert.equal(current.events[0]?.event, 'movie.created');
});

test('when a change is rolled back, then no client gets an event for it', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await movies.insertMovie(client, { title: 'Rolled back', year: 2016, runtime: 107, genres: ['drama'] });
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  const committed = await createMovie(api, { title: 'Committed' });
  await until(() => sse.events.length >= 1, 'the committed event');
  // The feed delivers in id order: an event of the rolled-back change would have come first.
  await until(() => sse.events.some((e) => dataOf(e).movie.id === committed.id), 'the committed event');
  assert.deepEqual(
    sse.events.map((e) => dataOf(e).movie.title),
    ['Committed'],
  );
});

test('when a transaction holds an uncommitted event, then other writers commit without waiting for it, and its event and theirs arrive once it ends, in transaction order', async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  await until(() => sse.comments.length >= 1, 'the stream to open');
  const holder = await db.connect();
  const other = await db.connect();
  t.after(async () => {
    await holder.query('ROLLBACK');
    holder.release();
    other.release();
  });
  await holder.query('BEGIN');
  const held = await movies.insertMovie(holder, {
    title: 'Held open',
    year: 2001,
    runtime: 90,
    genres: ['x'],
  });
  // No lock to wait on: this commits while the holder's transaction is still open.
  await other.query("SET lock_timeout = '2s'");
  const second = await movies.insertMovie(other, {
    title: 'Committed first',
    year: 2002,
    runtime: 90,
    genres: ['x'],
  });
  const third = await createMovie(api, { title: 'Committed second' });
  // Readers never pass a running transaction: nothing is delivered while it may still add
  // an event before the committed ones.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(sse.events, []);
  await holder.query('COMMIT');
  await until(() => sse.events.length >= 3, 'the three events');
  assert.deepEqual(
    sse.events.map((e) => dataOf(e).movie.id),
    [held.id, second.id, third.id],
  );
});

test('when a live client connects while an older transaction holds back committed events, then it gets only the events committed after it connected', async (t) => {
  const holder = await db.connect();
  t.after(async () => {
    await holder.query('ROLLBACK');
    holder.release();
  });
  await holder.query('BEGIN');
  // A transaction id older than every event below, as an autovacuum's analyze or a long
  // import would hold: nothing committed after it can be delivered until it ends.
  await holder.query('SELECT pg_current_xact_id()');
  const before = await createMovie(api, { title: 'Committed before the client came' });
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  await until(() => sse.comments.length >= 1, 'the stream to open');
  const after = await createMovie(api, { title: 'Committed after the client came' });
  await holder.query('COMMIT');
  await until(() => sse.events.length >= 1, 'the live event');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    sse.events.map((e) => dataOf(e).movie.id),
    [after.id],
  );
  assert.notEqual(before.id, after.id);
});

test('when a client has its 200, then every change committed after it reaches the client, however long the stream takes to find its start', async (t) => {
  const movie = await createMovie(api, { title: 'Before', year: 2001 });
  let opened = false;
  let committedAfterOpen: boolean | undefined;
  let committed = false;
  // The stream's start (the snapshot of ended transactions) is held back until the client has
  // its 200 (at most 300 ms), and a change commits meanwhile.
  const original = db.query.bind(db);
  db.query = ((...args: Parameters<typeof db.query>) => {
    const [query] = args as unknown as [{ name?: string }];
    if (committedAfterOpen !== undefined || query?.name !== 'select-current-snapshot')
      return original(...args);
    committedAfterOpen = false;
    return (async () => {
      await until(() => opened, 'the 200', 300).catch(() => {});
      committedAfterOpen = opened;
      const changed = await api({
        method: 'PATCH',
        url: `/v1/movies/${movie.id}`,
        payload: { title: 'During' },
      });
      assert.equal(changed.statusCode, 200);
      committed = true;
      return original(...args);
    })();
  }) as typeof db.query;
  t.after(() => {
    db.query = original;
  });
  const sse = await openSse(EVENTS, { token });
  opened = true;
  t.after(() => sse.close());
  await until(() => committed, 'the change during the start');
  await api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { title: 'After' } });
  const titles = () =>
    sse.events.map((e) => (JSON.parse(e.data ?? '{}') as { movie?: { title?: string } }).movie?.title);
  await until(() => titles().includes('After'), 'the change after the start');
  db.query = original;
  // A change committed before the 200 may be passed over; one committed after it may not.
  assert.deepEqual(titles(), committedAfterOpen ? ['During', 'After'] : ['After']);
});

test('when a client without a valid token, without movies:read or with an inactive account connects, then SSE answers 401 or 403 before any stream; a WebSocket needs a valid token to open and movies:read to subscribe to movies', async (t) => {
  const reader = await createUser(db, { permissions: ['movies:write'] });
  const inactive = await createUser(db, { activated: false, permissions: ['movies:read'] });
  const cases: [string | undefined, number, string][] = [
    [undefined, 401, 'you must be authenticated to access this resource'],
    ['AAAAAAAAAAAAAAAAAAAAAAAAAA', 401, 'invalid or missing authentication token'],
    [reader.token, 403, 'permission missing'],
    [inactive.token, 403, 'account not activated'],
  ];
  for (const [credential, status, message] of cases) {
    const sse = await openSse(EVENTS, { token: credential });
    assert.equal(sse.status, status);
    // Without a credential the upgrade goes through: the first message authenticates.
    if (credential === undefined) continue;
    if (status === 401) {
      const ws = await refusedWs(credential);
      assert.equal(ws.status, status);
      assert.deepEqual(JSON.parse(ws.body), { error: message });
      continue;
    }
    // Permissions are the topics': the socket opens, the subscribe is refused, the socket stays.
    const ws = await openWs(WS, credential);
    t.after(() => ws.socket.close());
    ws.send({ type: 'subscribe', topic: 'movies' });
    await until(() => ws.messages.length >= 1, 'the refusal');
    assert.deepEqual(ws.messages, [{ type: 'error', topic: 'movies', message }]);
    const movie = await createMovie(api, { title: 'Not for them' });
    ws.send({ type: 'unsubscribe', topic: 'movies' });
    await until(() => ws.messages.length >= 2, 'the socket to answer again');
    assert.deepEqual(ws.messages[1], { type: 'unsubscribed', topic: 'movies' });
    assert.equal(
      (ws.messages as Record<string, unknown>[]).some(
        (m) => (m.movie as { id: number } | undefined)?.id === movie.id,
      ),
      false,
    );
  }
});

test('when a browser-style WebSocket sends no credential with its upgrade, then its first message must authenticate it: 4401 otherwise', async (t) => {
  const reader = await createUser(db, { permissions: ['movies:write'] });
  const cases: [unknown, number, string][] = [
    [
      { type: 'subscribe', topic: 'movies' },
      4401,
      'authentication required: send {"type":"auth","token":"…"} first',
    ],
    [{ type: 'auth', token: 'AAAAAAAAAAAAAAAAAAAAAAAAAA' }, 4401, 'invalid authentication token'],
  ];
  for (const [first, code, reason] of cases) {
    const ws = await openWs(WS);
    ws.send(first);
    assert.deepEqual(await ws.closed, { code, reason });
  }
  const unprivileged = await openWs(WS);
  t.after(() => unprivileged.socket.close());
  unprivileged.send({ type: 'auth', token: reader.token });
  unprivileged.send({ type: 'subscribe', topic: 'movies' });
  await until(() => unprivileged.messages.length >= 2, 'authenticated and refused');
  assert.deepEqual(unprivileged.messages, [
    { type: 'authenticated' },
    { type: 'error', topic: 'movies', message: 'permission missing' },
  ]);
  const ws = await openWs(WS);
  t.after(() => ws.socket.close());
  ws.send({ type: 'auth', token });
  ws.send({ type: 'subscribe', topic: 'movies' });
  await until(() => ws.messages.length >= 2, 'authenticated and subscribed');
  assert.deepEqual(ws.messages, [{ type: 'authenticated' }, { type: 'subscribed', topic: 'movies' }]);
  const movie = await createMovie(api, { title: 'For the browser' });
  await until(
    () => ws.messages.some((m) => (m.movie as { id: number } | undefined)?.id === movie.id),
    'the event',
  );
});

test('when /v1/ws is fetched without an upgrade, then it answers 426 naming the protocol', async () => {
  const res = await fetch(`${base}/v1/ws`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 426);
  assert.equal(res.headers.get('upgrade'), 'websocket');
  assert.deepEqual(await res.json(), { error: 'this endpoint needs a WebSocket upgrade' });
});

test('when a WebSocket client sends a frame over the 4 KB limit, then it is closed with 1009 and logged at info, not as a server error', async () => {
  const before = lines.length;
  const ws = await openWs(WS, token);
  ws.send({ type: 'auth', token: 'x'.repeat(100_000) });
  assert.equal((await ws.closed).code, 1009);
  const logged = await waitFor('the log line', () =>
    lines.slice(before).find((l) => l.msg === 'websocket client error'),
  );
  assert.equal(logged.level, 'info');
  assert.equal(logged.code, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
  assert.deepEqual(
    lines.slice(before).filter((l) => l.level === 'error'),
    [],
  );
});

test('when a WebSocket client subscribes to movies, then it gets the events; after unsubscribing it gets none; bad messages get an error message', async (t) => {
  const ws = await openWs(WS, token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'movies' });
  await until(() => ws.messages.length >= 1, 'subscribed');
  assert.deepEqual(ws.messages[0], { type: 'subscribed', topic: 'movies' });
  const seen = await createMovie(api, { title: 'Seen' });
  await until(() => ws.messages.length >= 2, 'the event');
  const event = ws.messages[1] as {
    topic: string;
    id: number;
    type: string;
    movie: { id: number; version: number };
  };
  assert.equal(event.topic, 'movies');
  assert.equal(event.type, 'movie.created');
  assert.equal(event.movie.id, seen.id);
  assert.equal(event.id, await lastId());

  ws.send({ type: 'unsubscribe', topic: 'movies' });
  await until(() => ws.messages.length >= 3, 'unsubscribed');
  assert.deepEqual(ws.messages[2], { type: 'unsubscribed', topic: 'movies' });
  const observer = await openSse(EVENTS, { token });
  t.after(() => observer.close());
  await until(() => observer.comments.length >= 1, 'the observer to connect');
  const unseen = await createMovie(api, { title: 'Unseen' });
  // Once another client has it, the feed is past it: a new subscription starts after it.
  await until(() => observer.events.some((e) => dataOf(e).movie.id === unseen.id), 'the observer to see it');
  ws.socket.send('not json');
  ws.send({ type: 'subscribe', topic: 'albums' });
  ws.send({ type: 'subscribe', topic: 'movies', last_event_id: -1 });
  ws.send({ type: 'shout', topic: 'movies' });
  ws.send({ type: 'subscribe', topic: 'movies' });
  // What commits once the socket is told "subscribed" reaches it; before, it may not.
  await until(() => ws.messages.slice(3).some((m) => m.type === 'subscribed'), 'subscribed again');
  const live = await createMovie(api, { title: 'Live again' });
  await until(
    () => ws.messages.some((m) => (m.movie as { id: number } | undefined)?.id === live.id),
    'the live event',
  );
  assert.deepEqual(
    ws.messages.slice(3).map((m) => (m.type === 'error' ? m.message : m.type)),
    [
      'messages are JSON objects with a type',
      'unknown topic: the topics are "movies", "products", "orders"',
      'last_event_id must be a non-negative integer',
      'type must be subscribe or unsubscribe',
      'subscribed',
      'movie.created',
    ],
  );
  assert.equal(
    ws.messages.some((m) => (m.movie as { id: number } | undefined)?.id === unseen.id),
    false,
  );
});

test('when a WebSocket client subscribes with last_event_id, then it gets exactly the events after it first', async (t) => {
  const before = await lastId();
  const missed = await createMovie(api, { title: 'Missed by the socket' });
  const ws = await openWs(WS, token);
  t.after(() => ws.socket.close());
  ws.send({ type: 'subscribe', topic: 'movies', last_event_id: before });
  await until(() => ws.messages.length >= 2, 'the missed event');
  const [subscribed, event] = ws.messages as [Record<string, unknown>, { id: number; movie: { id: number } }];
  assert.deepEqual(subscribed, { type: 'subscribed', topic: 'movies' });
  assert.equal(event.id, await lastId());
  assert.equal(event.movie.id, missed.id);
});

test('when a stream owner loses movies:read or its token, then their SSE and WebSocket streams end within a second', async (t) => {
  const owner = await createUser(db, { permissions: ['movies:read'] });
  const other = await createUser(db, { permissions: ['movies:read'] });
  const sse = await openSse(EVENTS, { token: owner.token });
  const ws = await openWs(WS, owner.token);
  const bystander = await openSse(EVENTS, { token: other.token });
  t.after(() => {
    sse.close();
    ws.socket.close();
    bystander.close();
  });
  ws.send({ type: 'subscribe', topic: 'movies' });
  await until(() => ws.messages.length >= 1, 'subscribed');

  const revokedAt = Date.now();
  await revokePermissions(db, owner.id, ['movies:read']);
  let sseEndedAt = 0;
  let wsEndedAt = 0;
  void sse.ended.then(() => {
    sseEndedAt = Date.now();
  });
  const closed = ws.closed.then((close) => {
    wsEndedAt = Date.now();
    return close;
  });
  await until(() => sseEndedAt > 0 && wsEndedAt > 0, 'both streams to end', 1_000);
  assert.ok(sseEndedAt - revokedAt <= 1_000 && wsEndedAt - revokedAt <= 1_000);
  assert.deepEqual(sse.events.at(-1), {
    event: 'revoked',
    data: JSON.stringify({ reason: 'permission missing' }),
  });
  assert.deepEqual(await closed, { code: 1008, reason: 'permission missing' });

  // The other user's stream goes on.
  const after = await createMovie(api, { title: 'After the revocation' });
  await until(() => bystander.events.some((e) => dataOf(e).movie.id === after.id), 'the bystander event');
  assert.ok(lines.some((l) => l.msg === 'stream ended' && l.transport === 'sse' && l.reason === 'revoked'));
});

test("when a stream owner's token is deleted or expires, then the stream ends within a second", async (t) => {
  const owner = await createUser(db, { permissions: ['movies:read'] });
  const deleted = await openSse(EVENTS, { token: owner.token });
  // A token that expires in a moment: no notification tells anyone, the one-second check does.
  const other = await createUser(db, { permissions: ['movies:read'] });
  const expiring = generateToken(other.id, { ...SCOPES.authentication, ttlMs: 1_500 });
  await insertToken(db, expiring);
  const expired = await openSse(EVENTS, { token: expiring.plaintext });
  t.after(() => {
    deleted.close();
    expired.close();
  });
  assert.equal(expired.status, 200);
  const ended = (sse: typeof deleted) => {
    const at = { ms: 0 };
    void sse.ended.then(() => {
      at.ms = Date.now();
    });
    return at;
  };
  const deletedEnd = ended(deleted);
  const expiredEnd = ended(expired);
  const deletedAt = Date.now();
  await deleteTokensForUser(db, SCOPES.authentication.name, owner.id);
  await until(() => deletedEnd.ms > 0, 'the stream of the deleted token to end', 1_000);
  assert.ok(deletedEnd.ms - deletedAt <= 1_000);
  await until(() => expiredEnd.ms > 0, 'the stream of the expired token to end', 3_000);
  assert.ok(expiredEnd.ms - expiring.expiry.getTime() <= 1_000);
  for (const sse of [deleted, expired]) {
    assert.deepEqual(sse.events.at(-1), {
      event: 'revoked',
      data: JSON.stringify({ reason: 'invalid authentication token' }),
    });
  }
});

test('when a WebSocket client stops reading, then it is cut off once its unread bytes pass the bound, and the server goes on serving', async (t) => {
  const slow = await openWs(WS, token);
  t.after(() => slow.socket.terminate());
  slow.send({ type: 'subscribe', topic: 'movies' });
  await until(() => slow.messages.length >= 1, 'subscribed');
  (slow.socket as unknown as { _socket: { pause: () => void } })._socket.pause();

  // Big events, so the kernel's socket buffers fill quickly: 8 KB titles, 2,000 of them.
  const title = 'x'.repeat(8_000);
  for (let i = 0; i < 4; i++) {
    await movies.insertMovies(
      db,
      Array.from({ length: 500 }, () => ({ title, year: 2000, runtime: 90, genres: ['slow'] })),
    );
  }
  await until(
    () =>
      lines.some(
        (l) => l.msg === 'stream ended' && l.transport === 'websocket' && l.reason === 'slow_consumer',
      ),
    'the slow consumer to be cut off',
    10_000,
  );
  const cut = lines.find(
    (l) => l.msg === 'stream ended' && l.transport === 'websocket' && l.reason === 'slow_consumer',
  ) as {
    buffered_bytes: number;
  };
  // The server kept at most the bound and one event for it.
  assert.ok(cut.buffered_bytes <= MAX_BUFFERED + 16_384, `${cut.buffered_bytes} bytes buffered`);
  (slow.socket as unknown as { _socket: { resume: () => void } })._socket.resume();
  const { code } = await slow.closed;
  assert.ok([1013, 1006].includes(code), `closed with ${code}`);

  assert.equal((await fetch(`${base}/livez`)).status, 200);
  const metrics = await app.inject('/metrics');
  assert.match(
    metrics.body,
    /greenlight_streams_ended_total\{transport="websocket",reason="slow_consumer"\} 1/,
  );
  // Resuming after the flood, so it is not sent the rest of it.
  const healthy = await openSse(EVENTS, { token, headers: { 'last-event-id': String(await lastId()) } });
  t.after(() => healthy.close());
  const next = await createMovie(api, { title: 'After the slow one' });
  await until(
    () => healthy.events.some((e) => dataOf(e).movie.id === next.id),
    'the healthy client to go on',
    10_000,
  );
});

test('when a WebSocket client does not answer pings, then it is dropped; one that answers stays', async (t) => {
  // A second app on the same database, pinging every 100 ms.
  const pinging = await buildTestApp({ dsn, flags: ['-ws-ping', '100ms'] });
  await pinging.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `ws://127.0.0.1:${(pinging.app.server.address() as { port: number }).port}/v1/ws`;
  const silent = await openWs(url, pinging.token, { autoPong: false });
  const mute = await openWs(url);
  const answering = await openWs(url, pinging.token);
  t.after(() => {
    silent.socket.terminate();
    answering.socket.terminate();
  });
  let pings = 0;
  answering.socket.on('ping', () => pings++);
  const { code } = await silent.closed;
  assert.equal(code, 1006);
  // One that never authenticates is closed when the first ping is due.
  assert.equal((await mute.closed).code, 4401);
  await until(
    () =>
      pinging.lines.some(
        (l) => l.msg === 'stream ended' && l.transport === 'websocket' && l.reason === 'unresponsive',
      ),
    'the log line',
  );
  await until(() => pings >= 3, 'three pings');
  assert.equal(answering.socket.readyState, answering.socket.OPEN);
});

test("when the feed's LISTEN connection is cut, then it reconnects and no committed event is lost", async (t) => {
  const sse = await openSse(EVENTS, { token });
  t.after(() => sse.close());
  await until(() => sse.comments.length >= 1, 'the stream to open');
  const listeners = async () =>
    (
      await db.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'greenlight-events-listener' AND datname = current_database()",
      )
    ).rows.map((r) => r.pid);
  const [before] = await listeners();
  assert.ok(before);
  await db.query('SELECT pg_terminate_backend($1)', [before]);
  // Made while the listener is down or reconnecting: the poll or the reconnect's read finds it.
  const during = await createMovie(api, { title: 'While reconnecting' });
  await until(() => sse.events.some((e) => dataOf(e).movie.id === during.id), 'the event made meanwhile');
  let pids: number[] = [];
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; ) {
    pids = await listeners();
    if (pids.length === 1 && pids[0] !== before) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(pids.length, 1);
  assert.notEqual(pids[0], before);
  const after = await createMovie(api, { title: 'After reconnecting' });
  await until(() => sse.events.some((e) => dataOf(e).movie.id === after.id), 'the event after');
  assert.ok(lines.some((l) => l.msg === 'event feed listener lost; the safety poll covers it'));
});

// 2,000 events of about 1 KB: 30 times the bound of this app's clients.
async function insertBacklog(genre: string): Promise<void> {
  const title = 'y'.repeat(1_000);
  for (let i = 0; i < 4; i++) {
    await movies.insertMovies(
      db,
      Array.from({ length: 500 }, () => ({ title, year: 2000, runtime: 90, genres: [genre] })),
    );
  }
}

test('when a client resumes from far behind, then catching up is paced by its reading: it gets every missed event and is not cut off', async (t) => {
  const before = await lastId();
  await insertBacklog('resume');
  const sse = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => sse.close());
  await until(() => sse.events.length >= 2_000, 'the 2,000 missed events', 20_000);
  const ids = sse.events.map((e) => Number(e.id));
  assert.deepEqual(
    ids,
    [...ids].sort((a, b) => a - b),
  );
  assert.equal(new Set(ids).size, 2_000);
  assert.equal(ids.at(-1), await lastId());
  const live = await createMovie(api, { title: 'Live after the catch-up' });
  await until(() => sse.events.some((e) => dataOf(e).movie.id === live.id), 'the live event');
});

test('when a client resumes from far behind while an older transaction holds the backlog back, then it still gets every missed event, paced, and is not cut off', async (t) => {
  const before = await lastId();
  // A writer that began before the backlog: until it ends, no reader passes its transaction.
  const holder = await db.connect();
  t.after(() => holder.release());
  await holder.query('BEGIN');
  await holder.query('SELECT pg_current_xact_id()');
  await insertBacklog('held');
  const sse = await openSse(EVENTS, { token, headers: { 'last-event-id': String(before) } });
  t.after(() => sse.close());
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sse.events.length, 0);
  await holder.query('COMMIT');
  await until(() => sse.events.length >= 2_000, 'the 2,000 missed events', 10_000);
  assert.equal(new Set(sse.events.map((e) => Number(e.id))).size, 2_000);
  assert.equal(Number(sse.events.at(-1)?.id), await lastId());
  // Still open: a client cut off as a slow consumer would not get this one.
  const live = await createMovie(api, { title: 'Live after the held catch-up' });
  await until(() => sse.events.some((e) => dataOf(e).movie.id === live.id), 'the live event');
});

test('when a client stops reading while it catches up, then the events written meanwhile are not held for it, and once it reads it gets every one in order', async (t) => {
  const exposeGc = () => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  };
  const gc = exposeGc();
  const title = 'z'.repeat(8_000);
  const write = async (genre: string) => {
    for (let i = 0; i < 4; i++)
      await movies.insertMovies(
        db,
        Array.from({ length: 500 }, () => ({ title, year: 2000, runtime: 90, genres: [genre] })),
      );
  };
  const before = await lastId();
  await write('backlog');
  const stalled = await openWs(WS, token);
  t.after(() => stalled.socket.terminate());
  (stalled.socket as unknown as { _socket: { pause: () => void } })._socket.pause();
  stalled.send({ type: 'subscribe', topic: 'movies', last_event_id: before });
  await sleep(1_000);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  // 2,000 events of 8 KB while the client reads nothing: held for it, they would be 30 MB.
  await write('meanwhile');
  await sleep(1_000);
  gc();
  const grown = process.memoryUsage().heapUsed - heapBefore;
  assert.ok(grown < 10_000_000, `the heap grew by ${Math.round(grown / 1e6)} MB`);

  (stalled.socket as unknown as { _socket: { resume: () => void } })._socket.resume();
  const ids = () => stalled.messages.filter((m) => m.type === 'movie.created').map((m) => Number(m.id));
  await until(() => ids().length >= 4_000, 'the 4,000 events', 30_000);
  assert.deepEqual(
    ids(),
    Array.from({ length: 4_000 }, (_, i) => before + 1 + i),
  );
});

test('when WebSocket clients send subscribe and unsubscribe in a loop, then their subscriptions start one at a time and the pool is not flooded', async (t) => {
  const sockets = await Promise.all([1, 2, 3].map(() => openWs(WS, token)));
  t.after(() => {
    for (const ws of sockets) ws.socket.terminate();
  });
  let maxWaiting = 0;
  const sampler = setInterval(() => {
    maxWaiting = Math.max(maxWaiting, db.waitingCount);
  }, 2);
  t.after(() => clearInterval(sampler));
  const PAIRS = 3_000;
  for (const ws of sockets)
    for (let i = 0; i < PAIRS; i++) {
      ws.send({ type: 'subscribe', topic: 'movies', last_event_id: 0 });
      ws.send({ type: 'unsubscribe', topic: 'movies' });
    }
  const answered = (ws: (typeof sockets)[number]) =>
    ws.messages.filter((m) => m.type === 'unsubscribed').length;
  await until(() => sockets.every((ws) => answered(ws) === PAIRS), 'every unsubscribe answered', 30_000);
  await sleep(500);
  clearInterval(sampler);
  assert.ok(maxWaiting < 20, `${maxWaiting} queries waited for a connection at once`);

  const [last] = sockets as [(typeof sockets)[number]];
  last.send({ type: 'subscribe', topic: 'movies' });
  await until(() => last.messages.at(-1)?.type === 'subscribed', 'a subscribe after the loop');
  const movie = await createMovie(api, { title: 'After the loop' });
  await until(
    () => last.messages.some((m) => (m.movie as { id?: number } | undefined)?.id === movie.id),
    'its event',
  );
});
