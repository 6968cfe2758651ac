// A database that cannot be reached (down, restarting, refusing connections): every route
// answers 503 in its API's envelope with Retry-After, liveness stays 200 even with a
// credential, and the outage takes a line every few seconds in the log, not one per request.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { buildApp } from '../src/app.ts';
import { createPool } from '../src/platform/db.ts';
import { errorResponse, isDatabaseUnavailable, RETRY_AFTER_SECONDS } from '../src/platform/errors.ts';
import { OutageLog } from '../src/platform/outage.ts';
import { buildTestApp, captureLogger, createTestDatabase, testConfig, waitFor } from './helpers.ts';
import { freePort } from './ports.ts';

// A token of the book's shape: recognised without a query, then looked up in the database.
const TOKEN = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const UNAVAILABLE = 'the service is temporarily unavailable, please try again later';

async function appOnDeadDatabase() {
  const nowhere = `postgres://greenlight@127.0.0.1:${await freePort()}/greenlight`;
  const config = testConfig(nowhere);
  const db = createPool({ ...config.db, dsn: nowhere });
  const { logger, lines } = captureLogger();
  const app = buildApp({ config, db, logger, jobs: new PgBoss(nowhere) });
  await app.ready();
  after(async () => {
    await app.close();
    await db.end();
  });
  return { app, lines };
}

describe('when PostgreSQL cannot be reached', async () => {
  const { app, lines } = await appOnDeadDatabase();
  const bearer = { authorization: `Bearer ${TOKEN}` };

  test('when a credential is sent to the probes, then liveness is 200 and readiness 503', async () => {
    for (const url of ['/livez', '/v1/healthcheck']) {
      const res = await app.inject({ url, headers: bearer });
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
      const apiKey = await app.inject({ url, headers: { 'x-api-key': `glk_${'a'.repeat(32)}` } });
      assert.equal(apiKey.statusCode, 200, `${url} with an API key: ${apiKey.body}`);
    }
    for (const headers of [bearer, {}]) {
      const ready = await app.inject({ url: '/readyz', headers });
      assert.equal(ready.statusCode, 503, ready.body);
    }
  });

  test('when a credential is sent to an API route, then 503 in the envelope with Retry-After', async () => {
    const book = await app.inject({ url: '/v1/movies', headers: bearer });
    assert.equal(book.statusCode, 503, book.body);
    assert.deepEqual(book.json(), { error: UNAVAILABLE });
    assert.equal(book.headers['retry-after'], String(RETRY_AFTER_SECONDS));
    assert.ok(book.headers['x-request-id']);

    const products = await app.inject({ url: '/api/v1/products', headers: bearer });
    assert.equal(products.statusCode, 503, products.body);
    assert.deepEqual(products.json(), { code: 503, message: UNAVAILABLE });
    assert.equal(products.headers['retry-after'], String(RETRY_AFTER_SECONDS));

    const anonymous = await app.inject({ url: '/v1/movies/1' });
    assert.equal(anonymous.statusCode, 401, 'no credential: the book asks for one first');
  });

  test('when a burst of 200 requests meets the outage, then it is logged once, not 200 times', async () => {
    const before = lines.length;
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        app.inject({ url: i % 2 ? '/v1/movies' : '/api/v1/products', headers: bearer }),
      ),
    );
    assert.deepEqual(new Set(answers.map((a) => a.statusCode)), new Set([503]));
    const loud = lines.slice(before).filter((l) => l.level === 'error' || l.level === 'warn');
    assert.ok(loud.length <= 2, `${loud.length} lines: ${JSON.stringify(loud.slice(0, 3))}`);
    assert.ok(!lines.some((l) => l.msg === 'request failed'), 'no outage logged as a server fault');
  });
});

// A TCP relay in front of the test PostgreSQL: stopping it is the database going away under
// a running app (pooled connections reset, new ones refused); starting it again brings it back.
async function relayTo(dsn: string) {
  const target = new URL(dsn);
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const start = async () => {
    server = createServer((client) => {
      // The embedded server listens on 127.0.0.1 beside its Unix socket.
      const upstream = connect(Number(target.port), '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => {});
        s.once('close', () => sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
  };
  const stop = async () => {
    const closed = server && once(server, 'close');
    server?.close();
    for (const s of sockets) s.destroy();
    await closed;
  };
  await start();
  after(stop);
  const relayed = new URL(target);
  relayed.hostname = '127.0.0.1';
  relayed.port = String(port);
  return { dsn: relayed.toString(), start, stop };
}

test('when the database goes away under a running app, then 503 at once, liveness 200, and it serves again when it is back', async () => {
  const real = await createTestDatabase();
  const relay = await relayTo(real);
  const { app, api, lines } = await buildTestApp({ dsn: relay.dsn });
  assert.equal((await api('/v1/movies')).statusCode, 200);

  await relay.stop();
  const before = lines.length;
  const answers = await Promise.all(Array.from({ length: 50 }, () => api('/v1/movies')));
  assert.deepEqual(new Set(answers.map((a) => a.statusCode)), new Set([503]), answers[0]?.body);
  assert.equal(answers[0]?.headers['retry-after'], String(RETRY_AFTER_SECONDS));
  assert.equal((await api('/livez')).statusCode, 200);
  assert.equal((await api('/v1/healthcheck')).statusCode, 200);
  assert.equal((await api('/readyz')).statusCode, 503);
  // A loopback scrape (no credential to check) still answers, the pool's gauges with it; the job
  // queues' depths are unknown.
  const scrape = await app.inject('/metrics');
  assert.equal(scrape.statusCode, 200, scrape.body);
  const depths = scrape.body.split('\n').filter((line) => line.startsWith('greenlight_job_queue_depth{'));
  assert.ok(depths.length > 0 && depths.every((line) => / nan$/i.test(line)), depths.join('\n'));
  assert.match(scrape.body, /^greenlight_db_pool_connections\{/m);
  // Lines of the requests (the job queue's own polling reports its errors apart).
  const loud = lines
    .slice(before)
    .filter((l) => l.request_id !== undefined && (l.level === 'error' || l.level === 'warn'));
  assert.ok(loud.length <= 2, JSON.stringify(loud.map((l) => l.msg)));

  await relay.start();
  await waitFor('the database back', async () => (await api('/v1/movies')).statusCode === 200);
  // Readiness is checked once a second at most.
  await waitFor('ready again', async () => (await api('/readyz')).statusCode === 200);
});

describe('which errors are an unreachable database', () => {
  test('when a pool connects to a port nothing listens on, then the error is an outage (503)', async () => {
    const pool = new pg.Pool({ connectionString: `postgres://x@127.0.0.1:${await freePort()}/x` });
    const err = await pool.query('SELECT 1').catch((e: unknown) => e);
    await pool.end();
    assert.ok(isDatabaseUnavailable(err), String(err));
    assert.equal(errorResponse(err).status, 503);
  });

  test('when a pool connects to a Unix socket whose server is down, then the error is an outage (503)', async () => {
    // The embedded database's default: its socket file is gone while it is stopped.
    const pool = new pg.Pool({
      connectionString: `postgres://x@/x?host=${tmpdir()}/no-such-server&port=5432`,
    });
    const err = await pool.query('SELECT 1').catch((e: unknown) => e);
    await pool.end();
    assert.equal((err as { code?: string }).code, 'ENOENT');
    assert.ok(isDatabaseUnavailable(err), String(err));
    assert.equal(errorResponse(err).status, 503);
    const missingFile = await readFile(`${tmpdir()}/no-such-file`).catch((e: unknown) => e);
    assert.equal(isDatabaseUnavailable(missingFile), false, 'a missing file of ours is not an outage');
  });

  test('when the server never answers the connection, then the pool timeout is an outage', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => sockets.add(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const { port } = silent.address() as { port: number };
    const pool = new pg.Pool({
      connectionString: `postgres://x@127.0.0.1:${port}/x`,
      connectionTimeoutMillis: 200,
    });
    const err = await pool.query('SELECT 1').catch((e: unknown) => e);
    await pool.end();
    for (const socket of sockets) socket.destroy();
    silent.close();
    assert.ok(isDatabaseUnavailable(err), String(err));
  });

  test('when the server terminates the connection (57P01) mid-query, then it is an outage; a bad query is not', async () => {
    const dsn = await createTestDatabase();
    const client = new pg.Client({ connectionString: dsn });
    await client.connect();
    client.on('error', () => {});
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const sleeping = client.query('SELECT pg_sleep(10)').catch((e: unknown) => e);
    const admin = new pg.Client({ connectionString: dsn });
    await admin.connect();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    const err = (await sleeping) as { code?: string };
    assert.equal(err.code, '57P01');
    assert.ok(isDatabaseUnavailable(err));
    const bad = await admin.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
    assert.ok(!isDatabaseUnavailable(bad));
    assert.equal(errorResponse(bad).status, 500);
    await admin.end();
    await client.end().catch(() => {});
  });

  test('when a client aborts its body (ECONNRESET without a syscall), then it is not an outage', () => {
    const aborted = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
    assert.ok(!isDatabaseUnavailable(aborted));
  });
});

test('when an outage goes on, then one line starts it and at most one summary follows every few seconds', () => {
  const { logger, lines } = captureLogger();
  const outage = new OutageLog(5_000);
  const err = new Error('connect ECONNREFUSED');
  for (let ms = 0; ms < 20_000; ms += 50) outage.refused(logger, err, 1_000 + ms);
  assert.equal(lines[0]?.level, 'error');
  assert.equal(lines.length, 4, JSON.stringify(lines.map((l) => l.msg)));
  assert.ok(lines.slice(1).every((l) => l.level === 'warn' && (l.refused as number) > 90));
  outage.refused(logger, err, 1_000 + 20_000 + 60_000);
  assert.equal(lines.at(-1)?.level, 'error', 'after a quiet gap, a new outage starts');
});
