import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { MESSAGES } from '../src/platform/errors.ts';
import { buildTestApp, createMovie, createUser, type Inject, withToken } from './helpers.ts';

// The main app runs in development with a low cost limit, so that a costly operation is
// cheap to write; the production app has a depth limit of 2 and a tight rate limit.
const main = await buildTestApp({ flags: ['-graphql-max-cost', '200'] });
const { app, api, db } = main;
const production = await buildTestApp({
  flags: ['-env', 'production', '-graphql-max-depth', '2', '-limiter-enabled=true', '-limiter-rps', '0.01'],
});

type GraphqlBody = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; path?: string[]; extensions: Record<string, unknown> }[];
};

function gql(query: string, variables?: Record<string, unknown>, inject: Inject = api) {
  return inject({ method: 'POST', url: '/graphql', payload: { query, variables } });
}

async function data(query: string, variables?: Record<string, unknown>, inject: Inject = api) {
  const res = await gql(query, variables, inject);
  const body = res.json() as GraphqlBody;
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(body.errors, undefined, res.body);
  return body.data as Record<string, unknown>;
}

// The one error of a result, with no data; `extensions` as the REST error table made them.
async function failure(query: string, variables?: Record<string, unknown>, inject: Inject = api) {
  const res = await gql(query, variables, inject);
  const body = res.json() as GraphqlBody;
  assert.equal(body.errors?.length, 1, res.body);
  return { status: res.statusCode, data: body.data, error: body.errors?.[0] };
}

const anonymous: Inject = (options) => app.inject(options);
const as = (token: string) => withToken(app, token);

const MOVIE_FIELDS = 'id title year runtime genres version';

describe('queries', () => {
  test('when a movie is fetched by id, then its fields match the REST representation', async () => {
    const created = await createMovie(api, { title: 'Moana', genres: ['animation', 'adventure'] });
    const { movie } = await data(`query($id: ID!) { movie(id: $id) { ${MOVIE_FIELDS} } }`, {
      id: created.id,
    });
    assert.deepEqual(movie, {
      id: String(created.id),
      title: 'Moana',
      year: 2001,
      runtime: 100,
      genres: ['animation', 'adventure'],
      version: 1,
    });
  });

  test('when the id names no movie or is no id, then NOT_FOUND with the REST message', async () => {
    for (const id of ['999999999', 'abc', '0', '99999999999999999999']) {
      const {
        status,
        data: result,
        error,
      } = await failure('query($id: ID!) { movie(id: $id) { id } }', { id });
      assert.equal(status, 200);
      assert.equal(result, null);
      assert.deepEqual(error?.path, ['movie']);
      assert.equal(error?.message, MESSAGES.notFound);
      assert.deepEqual(error?.extensions, { code: 'NOT_FOUND', status: 404, error: MESSAGES.notFound });
    }
  });

  test('when movies are listed with filters, sort and paging, then they match GET /v1/movies', async () => {
    const genre = `g${Date.now()}`;
    for (const [title, year] of [
      ['Alpha River', 1990],
      ['Beta River', 2010],
      ['Gamma River', 2000],
      ['Delta Lake', 2005],
    ] as const) {
      await createMovie(api, { title, year, genres: [genre, 'drama'] });
    }
    const { movies } = await data(
      `{ movies(title: "river", genres: ["${genre}"], sort: "-year", page: 1, pageSize: 2) {
          movies { title year }
          metadata { currentPage pageSize firstPage lastPage totalRecords } } }`,
    );
    const rest = (await api(`/v1/movies?title=river&genres=${genre}&sort=-year&page=1&page_size=2`)).json();
    assert.deepEqual(movies, {
      movies: [
        { title: 'Beta River', year: 2010 },
        { title: 'Gamma River', year: 2000 },
      ],
      metadata: { currentPage: 1, pageSize: 2, firstPage: 1, lastPage: 2, totalRecords: 3 },
    });
    assert.deepEqual(
      rest.movies.map((m: { title: string; year: number }) => ({ title: m.title, year: m.year })),
      (movies as { movies: unknown[] }).movies,
    );
    const none = await data(
      '{ movies(title: "no such title anywhere") { movies { id } metadata { totalRecords } } }',
    );
    assert.deepEqual(none.movies, { movies: [], metadata: { totalRecords: null } });
  });

  test('when list arguments break the rules, then VALIDATION with the REST 422 field map', async () => {
    const { error } = await failure('{ movies(page: 0, pageSize: 101, sort: "rating") { movies { id } } }');
    const rest = await api('/v1/movies?page=0&page_size=101&sort=rating');
    assert.equal(rest.statusCode, 422);
    assert.deepEqual(error?.extensions, { code: 'VALIDATION', status: 422, error: rest.json().error });
    assert.deepEqual(rest.json().error, {
      page: 'must be greater than zero',
      page_size: 'must be a maximum of 100',
      sort: 'invalid sort value',
    });
  });

  test('when an authenticated user asks for me, then their user and permissions', async () => {
    const { me } = await data('{ me { user { id name email activated createdAt } permissions } }');
    const viewer = me as {
      user: { email: string; createdAt: string; activated: boolean };
      permissions: string[];
    };
    assert.match(viewer.user.email, /@example\.com$/);
    assert.match(viewer.user.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(viewer.user.activated, true);
    assert.deepEqual(viewer.permissions, ['movies:read', 'movies:write']);
  });

  test('when a query is answered, then the request log and metrics name /graphql', async () => {
    const { lines } = main;
    await data('{ me { permissions } }');
    const line = lines.findLast((l) => l.msg === 'request' && l.path === '/graphql');
    assert.equal(line?.method, 'POST');
    assert.equal(line?.status, 200);
    const metrics = await app.inject('/metrics');
    assert.match(metrics.body, /route="\/graphql"/);
  });

  test('when a query comes by GET, then it is answered as by POST', async () => {
    const created = await createMovie(api, { title: 'By GET' });
    const query = encodeURIComponent(`{ movie(id: ${created.id}) { title } }`);
    const res = await api(`/graphql?query=${query}`);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { data: { movie: { title: 'By GET' } } });
  });
});

describe('mutations', () => {
  test('when a valid movie is created, then it is returned and stored', async () => {
    const { createMovie: movie } = await data(
      `mutation($input: MovieInput!) { createMovie(input: $input) { ${MOVIE_FIELDS} } }`,
      { input: { title: 'Black Panther', year: 2018, runtime: 134, genres: ['action', 'adventure'] } },
    );
    const { id, ...fields } = movie as { id: string };
    assert.deepEqual(fields, {
      title: 'Black Panther',
      year: 2018,
      runtime: 134,
      genres: ['action', 'adventure'],
      version: 1,
    });
    const { rows } = await db.query('SELECT title, year, runtime, genres FROM movies WHERE id = $1', [id]);
    assert.deepEqual(rows, [
      { title: 'Black Panther', year: 2018, runtime: 134, genres: ['action', 'adventure'] },
    ]);
  });

  test('when a created movie breaks the rules, then VALIDATION with the REST field map and no row', async () => {
    const input = { title: '', year: 3000, runtime: -1, genres: ['a', 'a'] };
    const { error } = await failure('mutation($input: MovieInput!) { createMovie(input: $input) { id } }', {
      input,
    });
    const rest = await api({ method: 'POST', url: '/v1/movies', payload: { ...input, runtime: '-1 mins' } });
    assert.equal(rest.statusCode, 422);
    assert.deepEqual(error?.extensions, { code: 'VALIDATION', status: 422, error: rest.json().error });
    assert.equal(error?.message, 'validation failed');
    const empty = await failure('mutation { createMovie(input: {}) { id } }');
    assert.deepEqual(empty.error?.extensions.error, {
      title: 'must be provided',
      year: 'must be provided',
      runtime: 'must be provided',
      genres: 'must be provided',
    });
    const { rows } = await db.query("SELECT count(*)::int AS n FROM movies WHERE title = '' OR year = 3000");
    assert.equal(rows[0].n, 0);
  });

  test('when a movie is updated with its current version, then the change is stored and the version grows', async () => {
    const created = await createMovie(api, { title: 'Before' });
    const { updateMovie } = await data(
      'mutation($id: ID!, $v: Int) { updateMovie(id: $id, input: {title: "After", genres: null}, expectedVersion: $v) { title genres version } }',
      { id: created.id, v: created.version },
    );
    assert.deepEqual(updateMovie, { title: 'After', genres: ['drama'], version: 2 });
    const { rows } = await db.query('SELECT title, version FROM movies WHERE id = $1', [created.id]);
    assert.deepEqual(rows, [{ title: 'After', version: 2 }]);
  });

  test('when a movie is updated with a stale version, then EDIT_CONFLICT and the row is unchanged', async () => {
    const created = await createMovie(api, { title: 'Original' });
    await data('mutation($id: ID!) { updateMovie(id: $id, input: {year: 1999}) { version } }', {
      id: created.id,
    });
    const { error } = await failure(
      'mutation($id: ID!) { updateMovie(id: $id, input: {title: "Lost update"}, expectedVersion: 1) { version } }',
      { id: created.id },
    );
    assert.deepEqual(error?.extensions, { code: 'EDIT_CONFLICT', status: 409, error: MESSAGES.editConflict });
    const { rows } = await db.query('SELECT title, year, version FROM movies WHERE id = $1', [created.id]);
    assert.deepEqual(rows, [{ title: 'Original', year: 1999, version: 2 }]);
  });

  test('when an update breaks the rules, then VALIDATION and the row is unchanged', async () => {
    const created = await createMovie(api, { title: 'Kept' });
    const { error } = await failure(
      'mutation($id: ID!) { updateMovie(id: $id, input: {year: 1500}) { id } }',
      {
        id: created.id,
      },
    );
    assert.deepEqual(error?.extensions.error, { year: 'must be greater than 1888' });
    const { rows } = await db.query('SELECT year, version FROM movies WHERE id = $1', [created.id]);
    assert.deepEqual(rows, [{ year: 2001, version: 1 }]);
  });

  test('when a movie is deleted, then its id is returned, the row is gone and a second delete is NOT_FOUND', async () => {
    const created = await createMovie(api);
    const { deleteMovie } = await data('mutation($id: ID!) { deleteMovie(id: $id) }', { id: created.id });
    assert.equal(deleteMovie, String(created.id));
    const { rows } = await db.query('SELECT id FROM movies WHERE id = $1', [created.id]);
    assert.deepEqual(rows, []);
    const again = await failure('mutation($id: ID!) { deleteMovie(id: $id) }', { id: created.id });
    assert.equal(again.error?.extensions.code, 'NOT_FOUND');
  });
});

describe('permissions', () => {
  test('when an anonymous client queries movies or me, then UNAUTHENTICATED', async () => {
    for (const query of [
      '{ movie(id: 1) { id } }',
      '{ movies { movies { id } } }',
      '{ me { permissions } }',
    ]) {
      const { error } = await failure(query, undefined, anonymous);
      assert.deepEqual(error?.extensions, {
        code: 'UNAUTHENTICATED',
        status: 401,
        error: MESSAGES.authenticationRequired,
      });
    }
  });

  test('when a reader creates, updates or deletes, then FORBIDDEN and nothing changes', async () => {
    const movie = await createMovie(api, { title: 'Read only' });
    const reader = as((await createUser(db, { permissions: ['movies:read'] })).token);
    await data(`{ movie(id: ${movie.id}) { id } }`, undefined, reader);
    for (const mutation of [
      'mutation { createMovie(input: {title: "Nope", year: 2000, runtime: 90, genres: ["x"]}) { id } }',
      `mutation { updateMovie(id: ${movie.id}, input: {title: "Nope"}) { id } }`,
      `mutation { deleteMovie(id: ${movie.id}) }`,
    ]) {
      const { error } = await failure(mutation, undefined, reader);
      assert.deepEqual(error?.extensions, { code: 'FORBIDDEN', status: 403, error: MESSAGES.notPermitted });
    }
    const { rows } = await db.query("SELECT title FROM movies WHERE id = $1 OR title = 'Nope'", [movie.id]);
    assert.deepEqual(rows, [{ title: 'Read only' }]);
  });

  test('when a user without movies:read queries a movie, then FORBIDDEN', async () => {
    const nobody = as((await createUser(db)).token);
    const { error } = await failure('{ movies { movies { id } } }', undefined, nobody);
    assert.equal(error?.extensions.code, 'FORBIDDEN');
  });

  test('when an inactive account queries movies, then FORBIDDEN; it may still read me', async () => {
    const inactive = as((await createUser(db, { activated: false, permissions: ['movies:read'] })).token);
    const { error } = await failure('{ movies { movies { id } } }', undefined, inactive);
    assert.deepEqual(error?.extensions, { code: 'FORBIDDEN', status: 403, error: MESSAGES.inactiveAccount });
    const { me } = await data('{ me { user { activated } } }', undefined, inactive);
    assert.deepEqual(me, { user: { activated: false } });
  });

  test('when the bearer token is unknown, then 401 UNAUTHENTICATED with WWW-Authenticate', async () => {
    const res = await gql('{ me { permissions } }', undefined, as('ABCDEFGHIJKLMNOPQRSTUVWXYZ'));
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assert.deepEqual(res.json(), {
      errors: [
        {
          message: MESSAGES.invalidToken,
          extensions: { code: 'UNAUTHENTICATED', status: 401, error: MESSAGES.invalidToken },
        },
      ],
    });
  });
});

describe('limits', () => {
  test('when an operation costs more than -graphql-max-cost, then 400 before any resolver runs', async () => {
    const creates = Array.from(
      { length: 30 },
      (_, i) =>
        `m${i}: createMovie(input: {title: "Costly ${i}", year: 2000, runtime: 90, genres: ["x"]}) { ${MOVIE_FIELDS} }`,
    );
    const res = await gql(`mutation { ${creates.join('\n')} }`);
    assert.equal(res.statusCode, 400);
    const body = res.json() as GraphqlBody;
    assert.equal(body.data, null);
    assert.deepEqual(body.errors?.[0]?.extensions, {
      code: 'QUERY_TOO_COSTLY',
      status: 400,
      error: 'query cost exceeds the limit of 200',
    });
    const { rows } = await db.query("SELECT count(*)::int AS n FROM movies WHERE title LIKE 'Costly %'");
    assert.equal(rows[0].n, 0);
  });

  test('when an operation is nested deeper than -graphql-max-depth, then 400 QUERY_TOO_DEEP', async () => {
    const res = await production.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: { query: '{ movies { metadata { totalRecords } } }' },
    });
    assert.equal(res.statusCode, 400);
    assert.deepEqual((res.json() as GraphqlBody).errors?.[0]?.extensions, {
      code: 'QUERY_TOO_DEEP',
      status: 400,
      error: 'query depth exceeds the limit of 2',
    });
  });

  test('when introspection is asked for, then it is answered in development and refused in production', async () => {
    const query = '{ __schema { queryType { name } } }';
    assert.deepEqual(await data(query), { __schema: { queryType: { name: 'Query' } } });
    const res = await production.app.inject({ method: 'POST', url: '/graphql', payload: { query } });
    assert.equal(res.statusCode, 400);
    assert.match((res.json() as GraphqlBody).errors?.[0]?.message ?? '', /introspection has been disabled/);
  });
});

describe('GraphiQL', () => {
  test('when a browser opens /graphiql in development, then GraphiQL with no external asset', async () => {
    const res = await app.inject({ url: '/graphiql', headers: { accept: 'text/html' } });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.body, /<title>Greenlight GraphiQL<\/title>/);
    assert.doesNotMatch(res.body, /(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    assert.doesNotMatch(res.body, /unpkg|jsdelivr|cdnjs|esm\.sh/i);
  });

  test('when a browser opens /graphiql in production, then 404', async () => {
    const res = await production.app.inject({ url: '/graphiql', headers: { accept: 'text/html' } });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: MESSAGES.notFound });
  });
});

describe('malformed requests', () => {
  const cases: [string, string | undefined, RegExp][] = [
    ['badly-formed JSON', '{"query": ', /body contains badly-formed JSON/],
    ['no body', undefined, /body must not be empty/],
    ['no query', '{"variables": {}}', /body must contain a "query" string/],
    ['a query that is not a string', '{"query": 42}', /body must contain a "query" string/],
    ['a syntax error', '{"query": "{ movie(id: "}', /Syntax Error/],
    ['an unknown field', '{"query": "{ rating }"}', /Cannot query field "rating"/],
    ['a batch', '[{"query": "{ me { permissions } }"}]', /batches are not supported/],
    [
      'a variable of the wrong type',
      '{"query": "query($id: ID!) { movie(id: $id) { id } }", "variables": {"id": []}}',
      /\$id/,
    ],
  ];
  for (const [what, payload, message] of cases) {
    test(`when the body has ${what}, then 400 with a GraphQL error`, async () => {
      const res = await api({
        method: 'POST',
        url: '/graphql',
        ...(payload === undefined ? {} : { payload }),
      });
      assert.equal(res.statusCode, 400, res.body);
      const body = res.json() as GraphqlBody;
      assert.equal(body.data ?? null, null);
      assert.match(body.errors?.[0]?.message ?? '', message);
    });
  }

  test('when the body is over 1 MB, then 400 with the REST message in a GraphQL error', async () => {
    const res = await api({
      method: 'POST',
      url: '/graphql',
      payload: `{"query": "${' '.repeat(1_100_000)}"}`,
    });
    assert.equal(res.statusCode, 400);
    const message = 'body must not be larger than 1048576 bytes';
    assert.deepEqual(res.json(), {
      errors: [{ message, extensions: { code: 'BAD_REQUEST', status: 400, error: message } }],
    });
  });

  test('when a mutation comes by GET, then 405', async () => {
    const res = await api(`/graphql?query=${encodeURIComponent('mutation { deleteMovie(id: 1) }')}`);
    assert.equal(res.statusCode, 405);
  });

  test('when another method is used, then 405 with Allow; OPTIONS lists the methods', async () => {
    const put = await api({ method: 'PUT', url: '/graphql' });
    assert.equal(put.statusCode, 405);
    assert.equal(put.headers.allow, 'GET, OPTIONS, POST');
    assert.deepEqual(put.json(), { error: 'the PUT method is not supported for this resource' });
    const options = await api({ method: 'OPTIONS', url: '/graphql' });
    assert.equal(options.statusCode, 200);
    assert.equal(options.headers.allow, 'GET, OPTIONS, POST');
  });
});

describe('rate limiting and switching off', () => {
  test('when a client is over its rate limit, then 429 RATE_LIMITED with Retry-After', async () => {
    let res = await production.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: { query: '{ __typename }' },
    });
    for (let i = 0; i < 10 && res.statusCode !== 429; i++) {
      res = await production.app.inject({
        method: 'POST',
        url: '/graphql',
        payload: { query: '{ __typename }' },
      });
    }
    assert.equal(res.statusCode, 429);
    assert.ok(Number(res.headers['retry-after']) >= 1);
    assert.deepEqual(res.json(), {
      errors: [
        {
          message: MESSAGES.rateLimited,
          extensions: { code: 'RATE_LIMITED', status: 429, error: MESSAGES.rateLimited },
        },
      ],
    });
  });

  test('when -graphql-enabled=false, then /graphql is not found', async () => {
    const disabled: { app: FastifyInstance } = await buildTestApp({ flags: ['-graphql-enabled=false'] });
    const res = await disabled.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: { query: '{ __typename }' },
    });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: MESSAGES.notFound });
  });
});
