// The typed client in clients/typescript: current with the document, and able to drive a
// running server through the book's flow.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { generateSchema, SCHEMA_FILE } from '../clients/typescript/generate.ts';
import { createGreenlightClient } from '../clients/typescript/src/index.ts';
import { createPool } from '../src/platform/db.ts';
import { buildTestApp, createTestDatabase, createUser } from './helpers.ts';
import { startServer } from './processes.ts';

test('when the committed client is compared with the document, then it is current (else: npm run client:generate)', async () => {
  const { app } = await buildTestApp();
  const expected = await generateSchema(app.swagger());
  assert.ok(
    readFileSync(SCHEMA_FILE, 'utf8') === expected,
    'clients/typescript/src/schema.ts is stale: run `npm run client:generate` and commit it',
  );
});

test('when the client drives a live server, then it logs in, creates, lists, updates with a version and deletes', async (t) => {
  const dsn = await createTestDatabase();
  const db = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  const user = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const server = await startServer(t, ['-db-dsn', dsn]);
  const api = createGreenlightClient(`http://127.0.0.1:${server.port}`);

  const login = await api.POST('/v1/tokens/authentication', {
    body: { email: user.email, password: 'pa55word' },
  });
  assert.equal(login.response.status, 201);
  api.setToken(login.data?.authentication_token.token);

  const created = await api.POST('/v1/movies', {
    body: { title: 'Typed Client', year: 2016, runtime: '116 mins', genres: ['drama'] },
  });
  assert.equal(created.response.status, 201, JSON.stringify(created.error));
  const movie = created.data?.movie;
  assert.ok(movie);
  assert.equal(created.response.headers.get('location'), `/v1/movies/${movie.id}`);

  const list = await api.GET('/v1/movies', { params: { query: { title: 'typed', sort: '-year' } } });
  assert.deepEqual(
    list.data?.movies.map((m) => m.title),
    ['Typed Client'],
  );

  const updated = await api.PATCH('/v1/movies/{id}', {
    params: { path: { id: movie.id }, header: { 'x-expected-version': String(movie.version) } },
    body: { year: 2017 },
  });
  assert.equal(updated.data?.movie.version, 2);
  const stale = await api.PATCH('/v1/movies/{id}', {
    params: { path: { id: movie.id }, header: { 'x-expected-version': '1' } },
    body: { year: 2018 },
  });
  assert.equal(stale.response.status, 409);
  assert.deepEqual(stale.error, {
    error: 'unable to update the record due to an edit conflict, please try again',
  });

  const deleted = await api.DELETE('/v1/movies/{id}', { params: { path: { id: movie.id } } });
  assert.deepEqual(deleted.data, { message: 'movie successfully deleted' });
  const gone = await api.GET('/v1/movies/{id}', { params: { path: { id: movie.id } } });
  assert.equal(gone.response.status, 404);
});
