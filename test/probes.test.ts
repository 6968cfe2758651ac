import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { READINESS_TTL_MS } from '../src/operations/probes.routes.ts';
import { readMigrations, schemaState } from '../src/platform/migrations.ts';
import { buildTestApp, createUser, waitFor } from './helpers.ts';

const latest = readMigrations().at(-1)?.version as number;
const pad = (version: number) => String(version).padStart(6, '0');

// One readiness answer serves a second of requests: the next /readyz that differs from `last`.
const nextReadiness = (app: FastifyInstance, last: string, request: InjectOptions | string = '/readyz') =>
  waitFor(
    'the next readiness answer',
    async () => {
      const res = await app.inject(request);
      return res.body === last ? undefined : res;
    },
    3 * READINESS_TTL_MS,
  );

test('when the database is migrated, then /livez and /readyz answer 200 with every check ok', async () => {
  const { app } = await buildTestApp();
  const live = await app.inject('/livez');
  assert.equal(live.statusCode, 200);
  assert.deepEqual(live.json(), { status: 'alive' });
  const ready = await app.inject('/readyz');
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { status: 'ready', checks: { database: 'ok', migrations: 'ok' } });
});

test('when a migration is pending or the schema is dirty, then /readyz is 503 naming it and /livez stays 200', async () => {
  const { app, db } = await buildTestApp();
  await db.query('UPDATE schema_migrations SET version = $1', [latest - 1]);
  const pending = await app.inject('/readyz');
  assert.equal(pending.statusCode, 503);
  assert.deepEqual(pending.json(), {
    status: 'unavailable',
    checks: { database: 'ok', migrations: `pending: ${pad(latest)}` },
  });
  assert.equal((await app.inject('/livez')).statusCode, 200);

  await db.query('UPDATE schema_migrations SET version = $1, dirty = true', [latest]);
  const dirty = await nextReadiness(app, pending.body);
  assert.equal(dirty.statusCode, 503);
  assert.equal(dirty.json().checks.migrations, `dirty: ${pad(latest)}`);

  await db.query('DROP TABLE schema_migrations');
  assert.match((await nextReadiness(app, dirty.body)).json().checks.migrations, /^pending: 000001, /);
});

test('when the database knows a version newer than the code, then readiness says so', () => {
  const state = schemaState({ version: latest + 1, dirty: false }, readMigrations());
  assert.equal(state, `unknown version: ${pad(latest + 1)}`);
});

test('when the database fails, then /readyz gives its error text only to loopback clients and holders of metrics:view; others get the status alone', async () => {
  const { app, db } = await buildTestApp();
  const operator = await createUser(db, { permissions: ['metrics:view'] });
  const outsider = await createUser(db);
  const remote = { url: '/readyz', remoteAddress: '203.0.113.7' };
  // A real failure of the query readiness runs, whose text names the database's internals.
  await db.query('ALTER TABLE schema_migrations RENAME COLUMN dirty TO dirty_renamed');
  try {
    const local = await app.inject('/readyz');
    assert.equal(local.statusCode, 503);
    assert.match(local.json().checks.database, /^unreachable: column "dirty" does not exist/);

    for (const headers of [{}, { authorization: `Bearer ${outsider.token}` }]) {
      const anonymous = await app.inject({ ...remote, headers });
      assert.equal(anonymous.statusCode, 503);
      assert.deepEqual(anonymous.json(), { status: 'unavailable' });
      assert.doesNotMatch(anonymous.body, /dirty|column|unreachable/);
    }

    const permitted = await app.inject({ ...remote, headers: { authorization: `Bearer ${operator.token}` } });
    assert.equal(permitted.statusCode, 503);
    assert.match(permitted.json().checks.database, /^unreachable: column "dirty" does not exist/);
  } finally {
    await db.query('ALTER TABLE schema_migrations RENAME COLUMN dirty_renamed TO dirty');
  }
  const ready = await nextReadiness(app, JSON.stringify({ status: 'unavailable' }), remote);
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { status: 'ready' });
});

test('when -metrics-loopback=false, then a loopback client without metrics:view gets the readiness status alone', async () => {
  const { app } = await buildTestApp({ flags: ['-metrics-loopback=false'] });
  const res = await app.inject('/readyz');
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { status: 'ready' });
});

test('when /readyz is flooded, then the database is asked once a second, not once a request', async () => {
  let asked = 0;
  const { app } = await buildTestApp({
    configure: (_app, db) => {
      const query = db.query.bind(db) as (...args: unknown[]) => unknown;
      Object.assign(db, {
        query: (...args: unknown[]) => {
          const sql = args[0] as string | { text?: string };
          if (String(typeof sql === 'string' ? sql : sql.text).includes('schema_migrations')) asked++;
          return query(...args);
        },
      });
    },
  });
  const started = performance.now();
  const answers = await Promise.all(
    Array.from({ length: 100 }, () => app.inject({ url: '/readyz', remoteAddress: '203.0.113.50' })),
  );
  assert.deepEqual(new Set(answers.map((a) => a.statusCode)), new Set([200]));
  for (let i = 0; i < 50; i++) await app.inject({ url: '/readyz', remoteAddress: '203.0.113.50' });
  const seconds = (performance.now() - started) / READINESS_TTL_MS;
  assert.ok(asked <= Math.ceil(seconds) + 1, `${asked} readiness queries in ${seconds.toFixed(2)} s`);
});
