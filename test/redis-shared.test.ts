// With -redis-url, two instances on one database share their rate limits and their movie
// cache through a real redis-server; killing it degrades both to per-process behaviour
// without a failed request, and they share again once it is back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyReply } from 'fastify';
import prom from 'prom-client';
import { IDENTITY_REDIS_CHANNEL } from '../src/accounts/identity-cache.ts';
import { revokePermissions } from '../src/accounts/permissions.sql.ts';
import { MovieCache } from '../src/movies/movie-cache.ts';
import { connectRedis, RedisFallback } from '../src/platform/redis.ts';
import {
  buildTestApp,
  captureLogger,
  createMovie,
  createTestDatabase,
  createUser,
  type Movie,
  waitFor,
  withToken,
} from './helpers.ts';
import { startRedisServer } from './redis-server.ts';

const redis = await startRedisServer();
const dsn = await createTestDatabase();
const LIMITED = ['-limiter-enabled=true', '-limiter-rps', '0.5', '-limiter-burst', '4'];
const [limitedA, limitedB] = [
  await buildTestApp({ dsn, redisUrl: redis.url, flags: LIMITED }),
  await buildTestApp({ dsn, redisUrl: redis.url, flags: LIMITED }),
];
const [a, b] = [
  await buildTestApp({ dsn, redisUrl: redis.url, identityCache: true }),
  await buildTestApp({ dsn, redisUrl: redis.url, identityCache: true }),
];
const plain = await buildTestApp({ dsn });

function hit(app: typeof limitedA, remoteAddress: string) {
  return app.app.inject({ url: '/v1/healthcheck', remoteAddress });
}

async function metric(app: typeof a, pattern: RegExp): Promise<number> {
  const match = (await app.app.inject('/metrics')).body.match(pattern);
  return match ? Number(match[1]) : 0;
}

test('when a client sends burst + 1 requests spread over two instances, then exactly one is refused, with RateLimit headers', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++)
    statuses.push((await hit(i % 2 === 0 ? limitedA : limitedB, '192.0.2.1')).statusCode);
  assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
  const refused = await hit(limitedB, '192.0.2.1');
  assert.equal(refused.statusCode, 429);
  assert.deepEqual(refused.json(), { error: 'rate limit exceeded' });
  assert.equal(refused.headers['ratelimit-limit'], '4');
  assert.equal(refused.headers['ratelimit-remaining'], '0');
  assert.equal(refused.headers['retry-after'], '2');
  assert.equal(refused.headers['ratelimit-reset'], '2');
  // Another client is untouched; the bucket lives in Redis only until it would be full again
  // (4 tokens at 0.5 a second: 8 s, plus a second).
  assert.equal((await hit(limitedA, '192.0.2.2')).statusCode, 200);
  const { logger } = captureLogger();
  const connection = await connectRedis(redis.url, logger);
  const ttl = await connection.command.pttl('greenlight:ratelimit:client:ip:192.0.2.1');
  assert.ok(ttl > 0 && ttl <= 9000, `bucket lifetime ${ttl} ms`);
  await connection.close();
});

test('when a movie is cached on B and changed through A, then B serves the new version at once', async () => {
  const movie = await createMovie(a.api);
  const first = await b.api(`/v1/movies/${movie.id}`);
  assert.equal(first.headers['x-cache'], 'MISS');
  const second = await b.api(`/v1/movies/${movie.id}`);
  assert.equal(second.headers['x-cache'], 'HIT');
  assert.equal(second.body, first.body);

  const patched = await a.api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { year: 2020 } });
  assert.equal(patched.statusCode, 200);
  const fresh = await waitFor(
    'B to serve version 2',
    async () => {
      const response = await b.api(`/v1/movies/${movie.id}`);
      return response.json().movie.version === 2 ? response : undefined;
    },
    1000,
  );
  assert.equal(fresh.json().movie.year, 2020);
  assert.equal(fresh.body, patched.body);

  assert.equal((await a.api({ method: 'DELETE', url: `/v1/movies/${movie.id}` })).statusCode, 200);
  assert.equal((await b.api(`/v1/movies/${movie.id}`)).statusCode, 404);
});

test('when movies are created, updated and deleted, then cached lists on the other instance show each change', async () => {
  const genre = `redis${Date.now()}`;
  const url = `/v1/movies?genres=${genre}&sort=-year`;
  const list = async () => {
    const response = await b.api(url);
    assert.equal(response.statusCode, 200);
    return response;
  };
  assert.equal((await list()).headers['x-cache'], 'MISS');
  const empty = await list();
  assert.equal(empty.headers['x-cache'], 'HIT');
  assert.deepEqual(empty.json().movies, []);

  const movie = await createMovie(a.api, { genres: [genre], year: 1990 });
  const created = await list();
  assert.deepEqual(
    created.json().movies.map((m: Movie) => m.id),
    [movie.id],
  );
  assert.equal((await list()).headers['x-cache'], 'HIT');

  await a.api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { title: 'Renamed' } });
  assert.equal((await list()).json().movies[0].title, 'Renamed');

  await a.api({ method: 'DELETE', url: `/v1/movies/${movie.id}` });
  assert.deepEqual((await list()).json().movies, []);

  const imported = await a.api({
    method: 'POST',
    url: '/v1/movies/import',
    payload: `${JSON.stringify({ title: 'Imported', year: 2001, runtime: '90 mins', genres: [genre] })}\n`,
  });
  assert.equal(imported.statusCode, 200);
  assert.deepEqual(
    (await list()).json().movies.map((m: Movie) => m.title),
    ['Imported'],
  );
});

test('when an answer is cached, then it is byte for byte the uncached one, compressed or not', async () => {
  const movie = await createMovie(a.api, { title: 'Bytes "quoted" é', genres: ['drama', 'sci-fi'] });
  for (const url of [`/v1/movies/${movie.id}`, '/v1/movies?page_size=100&sort=-id']) {
    await b.api(url);
    const cached = await b.api(url);
    assert.equal(cached.headers['x-cache'], 'HIT', url);
    const uncached = await plain.api(url);
    assert.equal(uncached.headers['x-cache'], undefined);
    assert.equal(cached.body, uncached.body, url);
    assert.equal(cached.headers['content-type'], uncached.headers['content-type']);
    const br = { 'accept-encoding': 'br' };
    const compressed = await b.api({ url, headers: br });
    assert.equal(compressed.headers['x-cache'], 'HIT');
    assert.deepEqual(compressed.rawPayload, (await plain.api({ url, headers: br })).rawPayload);
  }
  assert.ok((await metric(b, /^greenlight_movie_cache_requests_total\{result="hit"\} (\d+)$/m)) >= 4);
});

test('when a read races a change, then the value it read is not cached after the invalidation', async () => {
  const { logger } = captureLogger();
  const connection = await connectRedis(redis.url, logger);
  const registry = new prom.Registry();
  const fallbacks = new prom.Counter({ name: 'f', help: 'f', labelNames: ['use'], registers: [registry] });
  const cache = new MovieCache(
    connection,
    60_000,
    new RedisFallback('movie cache', logger, fallbacks),
    registry,
  );
  const headers: Record<string, string> = {};
  const reply = {
    serialize: (payload: unknown) => JSON.stringify(payload),
    header(name: string, value: string) {
      headers[name] = value;
      return this;
    },
    type() {
      return this;
    },
  } as unknown as FastifyReply;

  let release: (() => void) | undefined;
  const reading = cache.movie(reply, '424242', async () => {
    await new Promise<void>((resolve) => {
      release = resolve;
    });
    return { movie: 'old' };
  });
  // The database read has begun (the cache missed); a change commits and is invalidated.
  await waitFor('the read to start', async () => (release ? true : undefined));
  await cache.changed([424242]);
  release?.();
  assert.equal(await reading, '{"movie":"old"}');
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(await cache.movie(reply, '424242', async () => ({ movie: 'new' })), '{"movie":"new"}');
  assert.equal(headers['x-cache'], 'MISS');
  assert.equal(await cache.movie(reply, '424242', async () => ({ movie: 'newer' })), '{"movie":"new"}');
  assert.equal(headers['x-cache'], 'HIT');
  await connection.close();
});

test('when a permission is revoked through A, then B refuses the cached token within 1 s, and the change is relayed on Redis once', async (t) => {
  const { logger } = captureLogger();
  const listener = await connectRedis(redis.url, logger);
  t.after(() => listener.close());
  const relayed: string[] = [];
  listener.subscribe(IDENTITY_REDIS_CHANNEL, (message) => relayed.push(message));
  await waitFor('the subscription', async () => {
    await listener.publish(IDENTITY_REDIS_CHANNEL, 'ping');
    return relayed.includes('ping') ? true : undefined;
  });

  const user = await createUser(a.db, { permissions: ['movies:read'] });
  const relays = () => relayed.filter((message) => message === String(user.id)).length;
  // The grant that createUser made is relayed once too.
  await waitFor('the grant to be relayed', async () => (relays() === 1 ? true : undefined), 1000);
  const movie = await createMovie(a.api);
  const read = () => withToken(b.app, user.token)(`/v1/movies/${movie.id}`);
  assert.equal((await read()).statusCode, 200);
  assert.equal((await read()).statusCode, 200);

  await revokePermissions(a.db, user.id, ['movies:read']);
  await waitFor(
    'B to refuse the token',
    async () => ((await read()).statusCode === 403 ? true : undefined),
    1000,
  );
  await waitFor('the relayed revocation', async () => (relays() === 2 ? true : undefined), 1000);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(relays(), 2);
});

test('when Redis stalls past the command timeout, then requests are answered without it (local bucket, cache bypassed)', async (t) => {
  const movie = await createMovie(a.api);
  const { logger } = captureLogger();
  const staller = await connectRedis(redis.url, logger);
  t.after(() => staller.close());
  const fallbacks = () => metric(b, /^greenlight_redis_fallbacks_total\{use="movie cache"\} (\d+)$/m);
  const before = await fallbacks();
  // A script that keeps Redis busy for 700 ms: every other command waits behind it.
  const stall = staller.command
    .call(
      'EVAL',
      `local s = redis.call('TIME')
       local start = tonumber(s[1]) * 1000000 + tonumber(s[2])
       while true do
         local n = redis.call('TIME')
         if tonumber(n[1]) * 1000000 + tonumber(n[2]) - start > 700000 then return 1 end
       end`,
      '0',
    )
    .catch(() => 0);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const [limited, read] = await Promise.all([hit(limitedA, '192.0.2.9'), b.api(`/v1/movies/${movie.id}`)]);
  assert.equal(limited.statusCode, 200);
  assert.equal(read.statusCode, 200);
  assert.equal(read.headers['x-cache'], 'BYPASS');
  assert.equal(read.json().movie.id, movie.id);
  assert.ok((await fallbacks()) > before);
  await stall;
  // Redis is tried again a second after the failure, and the limiter shares again.
  const logged = limitedA.lines.length;
  await waitFor('the limiter to use Redis again', async () => {
    await hit(limitedA, '192.0.2.10');
    return limitedA.lines
      .slice(logged)
      .some((line) => line.msg === 'redis answers again: limiter shared again')
      ? true
      : undefined;
  });
});

test('when Redis is killed, then nothing fails: limits fall back to each process, the cache is bypassed, readiness names Redis; when it returns, both are shared again', async () => {
  const movie = await createMovie(a.api);
  const logged = limitedA.lines.length;
  await redis.stop();

  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await hit(limitedA, '192.0.2.3')).statusCode);
  assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
  assert.equal((await hit(limitedB, '192.0.2.3')).statusCode, 200);

  for (let i = 0; i < 3; i++) {
    const read = await b.api(`/v1/movies/${movie.id}`);
    assert.equal(read.statusCode, 200);
    assert.equal(read.headers['x-cache'], 'BYPASS');
  }
  const patched = await a.api({ method: 'PATCH', url: `/v1/movies/${movie.id}`, payload: { year: 2011 } });
  assert.equal(patched.statusCode, 200);
  assert.equal((await b.api(`/v1/movies/${movie.id}`)).json().movie.year, 2011);
  assert.equal((await b.api('/v1/movies')).headers['x-cache'], 'BYPASS');

  const ready = await b.app.inject('/readyz');
  assert.equal(ready.statusCode, 503);
  assert.match(ready.json().checks.redis, /^unreachable/);
  assert.ok((await metric(b, /^greenlight_redis_fallbacks_total\{use="movie cache"\} (\d+)$/m)) >= 4);
  assert.ok((await metric(limitedA, /^greenlight_redis_fallbacks_total\{use="limiter"\} (\d+)$/m)) >= 5);
  assert.ok((await metric(b, /^greenlight_movie_cache_requests_total\{result="bypass"\} (\d+)$/m)) >= 4);
  // Logged once for the outage, not once per request.
  const outages = limitedA.lines
    .slice(logged)
    .filter((line) => line.msg?.startsWith('redis unavailable: limiter'));
  assert.equal(outages.length, 1);

  await redis.start();
  await waitFor('readiness', async () =>
    (await b.app.inject('/readyz')).statusCode === 200 ? true : undefined,
  );
  await waitFor('the cache', async () => {
    const read = await b.api(`/v1/movies/${movie.id}`);
    return read.headers['x-cache'] === 'HIT' ? true : undefined;
  });
  const shared: number[] = [];
  for (let i = 0; i < 5; i++)
    shared.push((await hit(i % 2 === 0 ? limitedA : limitedB, '192.0.2.4')).statusCode);
  assert.deepEqual(shared, [200, 200, 200, 200, 429]);
  assert.ok(limitedA.lines.some((line) => line.msg === 'redis answers again: limiter shared again'));
});
