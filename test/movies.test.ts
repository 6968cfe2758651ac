import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildTestApp, createMovie, type Movie } from './helpers.ts';

const { api, db } = await buildTestApp();

function post(payload: string, url = '/v1/movies', method: 'POST' | 'PATCH' = 'POST') {
  return api({ method, url, payload, headers: { 'content-type': 'application/json' } });
}

describe('POST /v1/movies', () => {
  test('when the movie is valid, then 201 with Location and the book envelope', async () => {
    const res = await post(
      '{"title":"Moana","year":2016,"runtime":"107 mins","genres":["animation","adventure"]}',
    );
    assert.equal(res.statusCode, 201);
    const { movie } = res.json() as { movie: Movie };
    assert.equal(res.headers.location, `/v1/movies/${movie.id}`);
    assert.deepEqual(Object.keys(movie), ['id', 'title', 'year', 'runtime', 'genres', 'version']);
    assert.deepEqual(movie, {
      id: movie.id,
      title: 'Moana',
      year: 2016,
      runtime: '107 mins',
      genres: ['animation', 'adventure'],
      version: 1,
    });
    const { rows } = await db.query('SELECT title, runtime, genres FROM movies WHERE id = $1', [movie.id]);
    assert.deepEqual(rows[0], { title: 'Moana', runtime: 107, genres: ['animation', 'adventure'] });
  });

  const badBodies: [string, string, string][] = [
    [
      'XML',
      '<?xml version="1.0" encoding="UTF-8"?><note><to>Alex</to></note>',
      'body contains badly-formed JSON (at character 1)',
    ],
    ['a trailing comma', '{"title": "Moana", }', 'body contains badly-formed JSON (at character 20)'],
    ['a truncated object', '{"title": "Moana", ', 'body contains badly-formed JSON'],
    ['an array', '["foo", "bar"]', 'body contains incorrect JSON type (at character 1)'],
    ['a wrong field type', '{"title": 123}', 'body contains incorrect JSON type for field "title"'],
    ['an unknown key', '{"title": "Moana", "rating":"PG"}', 'body contains unknown key "rating"'],
    ['two values', '{"title": "Moana"}{"title": "Top Gun"}', 'body must only contain a single JSON value'],
    ['a runtime number', '{"runtime": 107}', 'invalid runtime format'],
    ['a runtime in hours', '{"runtime": "2 hours"}', 'invalid runtime format'],
    ['white space only', '  \n', 'body must not be empty'],
  ];
  for (const [what, body, message] of badBodies) {
    test(`when the body is ${what}, then 400 "${message}"`, async () => {
      const res = await post(body);
      assert.equal(res.statusCode, 400);
      assert.deepEqual(res.json(), { error: message });
    });
  }

  test('when there is no body at all, then 400 body must not be empty', async () => {
    const res = await api({ method: 'POST', url: '/v1/movies' });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), { error: 'body must not be empty' });
  });

  test('when the body is larger than 1 MB, then 400 and nothing is stored', async () => {
    const before = await db.query('SELECT count(*) FROM movies');
    const huge = `{"title": "${'a'.repeat(1_048_577)}"}`;
    const res = await post(huge);
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), { error: 'body must not be larger than 1048576 bytes' });
    assert.deepEqual((await db.query('SELECT count(*) FROM movies')).rows, before.rows);
  });

  test("when every field is missing, then 422 with every field, in key order as the book's Go writes its map", async () => {
    const res = await post('{}');
    assert.equal(res.statusCode, 422);
    assert.equal(
      res.body,
      '{"error":{"genres":"must be provided","runtime":"must be provided","title":"must be provided","year":"must be provided"}}',
    );
  });

  const invalid: [string, Record<string, unknown>, Record<string, string>][] = [
    ['a 501-byte title', { title: `${'é'.repeat(250)}x` }, { title: 'must not be more than 500 bytes long' }],
    ['year 1887', { year: 1887 }, { year: 'must be greater than 1888' }],
    ['a future year', { year: new Date().getFullYear() + 1 }, { year: 'must not be in the future' }],
    ['a negative runtime', { runtime: '-1 mins' }, { runtime: 'must be a positive integer' }],
    ['no genres', { genres: [] }, { genres: 'must contain at least 1 genre' }],
    [
      'six genres',
      { genres: ['a', 'b', 'c', 'd', 'e', 'f'] },
      { genres: 'must not contain more than 5 genres' },
    ],
    ['duplicate genres', { genres: ['a', 'a'] }, { genres: 'must not contain duplicate values' }],
  ];
  for (const [what, change, error] of invalid) {
    test(`when the movie has ${what}, then 422 naming that field`, async () => {
      const movie = { title: 'T', year: 2000, runtime: '90 mins', genres: ['drama'], ...change };
      const res = await post(JSON.stringify(movie));
      assert.equal(res.statusCode, 422);
      assert.deepEqual(res.json(), { error });
    });
  }

  test('when the client sends id or version, then 400 unknown key (they cannot be set)', async () => {
    const res = await post('{"id": 5, "title":"T","year":2000,"runtime":"90 mins","genres":["drama"]}');
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), { error: 'body contains unknown key "id"' });
  });
});

describe('GET/DELETE /v1/movies/:id', () => {
  test('when the movie exists, then 200 with it', async () => {
    const movie = await createMovie(api, { title: 'Alien' });
    const res = await api(`/v1/movies/${movie.id}`);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { movie });
  });

  for (const id of ['abc', '0', '-1', '1.5', '99999999', '9223372036854775808']) {
    test(`when the id is ${id}, then 404`, async () => {
      const res = await api(`/v1/movies/${id}`);
      assert.equal(res.statusCode, 404);
      assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
    });
  }

  test('when a movie is deleted, then 200 and it is gone; a second delete is 404', async () => {
    const movie = await createMovie(api);
    const res = await api({ method: 'DELETE', url: `/v1/movies/${movie.id}` });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { message: 'movie successfully deleted' });
    assert.equal((await db.query('SELECT 1 FROM movies WHERE id = $1', [movie.id])).rowCount, 0);
    const again = await api({ method: 'DELETE', url: `/v1/movies/${movie.id}` });
    assert.equal(again.statusCode, 404);
  });
});

describe('PATCH /v1/movies/:id', () => {
  test('when some fields are sent, then only they change, null is ignored and version goes up', async () => {
    const movie = await createMovie(api, { title: 'Black Panther', year: 2018, runtime: '134 mins' });
    const res = await post(
      '{"year": 2019, "title": null, "genres": null}',
      `/v1/movies/${movie.id}`,
      'PATCH',
    );
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { movie: { ...movie, year: 2019, version: 2 } });
  });

  test('when the update breaks a rule, then 422 and the row is unchanged', async () => {
    const movie = await createMovie(api);
    const res = await post('{"genres": []}', `/v1/movies/${movie.id}`, 'PATCH');
    assert.equal(res.statusCode, 422);
    assert.deepEqual(res.json(), { error: { genres: 'must contain at least 1 genre' } });
    const { rows } = await db.query('SELECT version FROM movies WHERE id = $1', [movie.id]);
    assert.equal(rows[0].version, 1);
  });

  test('when X-Expected-Version matches, then 200; when stale, then 409', async () => {
    const movie = await createMovie(api);
    const ok = await api({
      method: 'PATCH',
      url: `/v1/movies/${movie.id}`,
      payload: { title: 'New' },
      headers: { 'x-expected-version': '1' },
    });
    assert.equal(ok.statusCode, 200);
    const stale = await api({
      method: 'PATCH',
      url: `/v1/movies/${movie.id}`,
      payload: { title: 'Newer' },
      headers: { 'x-expected-version': '1' },
    });
    assert.equal(stale.statusCode, 409);
    assert.deepEqual(stale.json(), {
      error: 'unable to update the record due to an edit conflict, please try again',
    });
  });

  test('when N clients patch at once, then no update is lost (final version = 1 + number of 200s)', async () => {
    const movie = await createMovie(api);
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        post(`{"runtime": "${100 + i} mins"}`, `/v1/movies/${movie.id}`, 'PATCH'),
      ),
    );
    const statuses = responses.map((r) => r.statusCode);
    assert.ok(
      statuses.every((s) => s === 200 || s === 409),
      `unexpected statuses ${statuses}`,
    );
    const succeeded = statuses.filter((s) => s === 200).length;
    assert.ok(succeeded >= 1);
    const { rows } = await db.query('SELECT version FROM movies WHERE id = $1', [movie.id]);
    assert.equal(rows[0].version, 1 + succeeded);
  });
});
