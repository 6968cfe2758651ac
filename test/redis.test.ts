// The optional Redis connection against a real redis-server: readiness and metrics follow
// it, a dead Redis never fails a request, and the connection comes back by itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectRedis } from '../src/platform/redis.ts';
import { buildTestApp, captureLogger, createMovie, waitFor } from './helpers.ts';
import { startRedisServer } from './redis-server.ts';

test('when Redis dies and returns, then readiness and the redis_up gauge follow it, requests are served throughout, and it reconnects by itself', async () => {
  const redis = await startRedisServer();
  const { app, api, lines } = await buildTestApp({ redisUrl: redis.url });
  const movie = await createMovie(api);

  const ready = await app.inject('/readyz');
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json().checks, { database: 'ok', migrations: 'ok', redis: 'ok' });
  assert.match((await app.inject('/metrics')).body, /^greenlight_redis_up 1$/m);

  await redis.stop();
  const down = await waitFor('readiness to report Redis', async () => {
    const response = await app.inject('/readyz');
    return response.statusCode === 503 ? response : undefined;
  });
  assert.equal(down.json().status, 'unavailable');
  assert.match(down.json().checks.redis, /^unreachable: /);
  assert.equal(down.json().checks.database, 'ok');
  assert.match((await app.inject('/metrics')).body, /^greenlight_redis_up 0$/m);
  assert.equal((await api(`/v1/movies/${movie.id}`)).statusCode, 200);
  assert.ok(lines.some((line) => line.msg?.startsWith('redis connection lost')));

  await redis.start();
  await waitFor('readiness to recover', async () =>
    (await app.inject('/readyz')).statusCode === 200 ? true : undefined,
  );
  assert.ok(lines.some((line) => line.msg === 'redis connection restored'));
});

test('when one connection publishes, then a subscriber on another receives it, also after Redis restarted', async () => {
  const redis = await startRedisServer();
  const { logger } = captureLogger();
  const [a, b] = [await connectRedis(redis.url, logger), await connectRedis(redis.url, logger)];
  const received: string[] = [];
  const unsubscribe = b.subscribe('greenlight_test', (message) => received.push(message));
  await waitFor('the first message', async () => {
    await a.publish('greenlight_test', 'one');
    return received.includes('one') ? true : undefined;
  });

  await redis.stop();
  await assert.rejects(a.publish('greenlight_test', 'lost'));
  await redis.start();
  await waitFor('a message after the restart', async () => {
    await a.publish('greenlight_test', 'two').catch(() => {});
    return received.includes('two') ? true : undefined;
  });

  unsubscribe();
  await a.close();
  await b.close();
});

test('when Redis is not running at start, then the connection is not fatal and comes up once Redis does', async () => {
  const redis = await startRedisServer();
  await redis.stop();
  const { logger, lines } = captureLogger();
  const connection = await connectRedis(redis.url, logger);
  assert.match(connection.status(), /^unreachable: /);
  assert.ok(lines.some((line) => line.msg?.startsWith('redis unreachable at start')));
  await redis.start();
  await waitFor('the connection', async () => (connection.status() === 'ok' ? true : undefined));
  await connection.close();
});
