import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readMigrations, schemaState } from '../src/platform/migrations.ts';
import { buildTestApp } from './helpers.ts';

const latest = readMigrations().at(-1)?.version as number;
const pad = (version: number) => String(version).padStart(6, '0');

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
  const dirty = await app.inject('/readyz');
  assert.equal(dirty.statusCode, 503);
  assert.equal(dirty.json().checks.migrations, `dirty: ${pad(latest)}`);

  await db.query('DROP TABLE schema_migrations');
  assert.match((await app.inject('/readyz')).json().checks.migrations, /^pending: 000001, /);
});

test('when the database knows a version newer than the code, then readiness says so', () => {
  const state = schemaState({ version: latest + 1, dirty: false }, readMigrations());
  assert.equal(state, `unknown version: ${pad(latest + 1)}`);
});
