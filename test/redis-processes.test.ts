// Two `serve` processes on one database and one redis-server: one rate limit per client
// across both, and a movie cached by one is fresh there as soon as the other changed it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPool } from '../src/platform/db.ts';
import { createTestDatabase, createUser, TEST_JWT_SECRET, testConfig } from './helpers.ts';
import { startServer } from './processes.ts';
import { startRedisServer } from './redis-server.ts';

test('when two processes share Redis, then a change through A is what B serves next, and burst + 1 requests spread over them meet one 429', async (t) => {
  const redis = await startRedisServer();
  const dsn = await createTestDatabase();
  const flags = [
    '-db-dsn',
    dsn,
    '-redis-url',
    redis.url,
    '-jwt-secret',
    TEST_JWT_SECRET,
    '-limiter-enabled=true',
    '-limiter-rps',
    '0.5',
    '-limiter-burst',
    '6',
  ];
  const [a, b] = await Promise.all([startServer(t, flags, 30_000), startServer(t, flags, 30_000)]);
  const at = (server: typeof a, path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${server.port}${path}`, init);

  const db = createPool({ ...testConfig(dsn).db, dsn });
  t.after(() => db.end());
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const authorization = { authorization: `Bearer ${token}` };
  const created = await at(a, '/v1/movies', {
    method: 'POST',
    headers: authorization,
    body: JSON.stringify({ title: 'Two Processes', year: 2001, runtime: '90 mins', genres: ['drama'] }),
  });
  assert.equal(created.status, 201);
  const { movie } = (await created.json()) as { movie: { id: number } };
  const read = () => at(b, `/v1/movies/${movie.id}`, { headers: authorization });
  assert.equal((await read()).headers.get('x-cache'), 'MISS');
  const cached = await read();
  assert.equal(cached.headers.get('x-cache'), 'HIT');
  assert.equal(((await cached.json()) as { movie: { version: number } }).movie.version, 1);

  const patched = await at(a, `/v1/movies/${movie.id}`, {
    method: 'PATCH',
    headers: authorization,
    body: JSON.stringify({ year: 2002 }),
  });
  assert.equal(patched.status, 200);
  const fresh = await read();
  assert.equal(fresh.status, 200);
  assert.deepEqual(await fresh.json(), await patched.json());

  // The address's bucket, untouched so far (the token's requests went to the user's).
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) statuses.push((await at(i % 2 === 0 ? a : b, '/v1/healthcheck')).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429]);
});
