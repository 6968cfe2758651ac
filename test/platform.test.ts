import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AuthenticationRequiredError,
  BadRequestError,
  BusyError,
  EditConflictError,
  ERROR_RESPONSES,
  errorResponse,
  ForbiddenError,
  InactiveAccountError,
  InvalidAuthenticationTokenError,
  InvalidCredentialsError,
  MethodNotAllowedError,
  NotFoundError,
  NotPermittedError,
  PayloadTooLargeError,
  RangeNotSatisfiableError,
  RateLimitedError,
  UnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../src/platform/errors.ts';
import { redactSecrets } from '../src/platform/metrics.ts';
import { buildTestApp } from './helpers.ts';

const { app, api, db, lines } = await buildTestApp({
  configure: (app, db) => {
    app.get('/test/throw', async () => {
      throw new Error('boom in handler');
    });
    app.get('/test/throw-sync', () => {
      throw new TypeError('sync boom');
    });
    app.get('/test/slow-query', async () => {
      await db.query("SELECT pg_sleep(4), 'greenlight-slow-query-marker'");
      return { ok: true };
    });
  },
});

describe('the error table', () => {
  const rows: [Error, number, unknown, Record<string, string>?][] = [
    [new NotFoundError(), 404, 'the requested resource could not be found'],
    [
      new MethodNotAllowedError('PUT', 'GET, OPTIONS'),
      405,
      'the PUT method is not supported for this resource',
      { allow: 'GET, OPTIONS' },
    ],
    [new BadRequestError('body must not be empty'), 400, 'body must not be empty'],
    [new ValidationError({ title: 'must be provided' }), 422, { title: 'must be provided' }],
    [new UnavailableError('the database is unavailable'), 503, 'the database is unavailable'],
    [
      new PayloadTooLargeError('body must not be larger than 2048 bytes'),
      413,
      'body must not be larger than 2048 bytes',
    ],
    [new BusyError('a profile is already being taken'), 409, 'a profile is already being taken'],
    [new UnsupportedMediaTypeError('body must be a poster'), 415, 'body must be a poster'],
    [
      new RangeNotSatisfiableError(2048),
      416,
      'the requested range is not satisfiable',
      { 'content-range': 'bytes */2048' },
    ],
    [new EditConflictError(), 409, 'unable to update the record due to an edit conflict, please try again'],
    [new RateLimitedError(3), 429, 'rate limit exceeded', { 'retry-after': '3' }],
    [new InvalidCredentialsError(), 401, 'invalid authentication credentials'],
    [
      new InvalidAuthenticationTokenError(),
      401,
      'invalid or missing authentication token',
      { 'www-authenticate': 'Bearer' },
    ],
    [new AuthenticationRequiredError(), 401, 'you must be authenticated to access this resource'],
    [new InactiveAccountError(), 403, 'your user account must be activated to access this resource'],
    [
      new NotPermittedError(),
      403,
      "your user account doesn't have the necessary permissions to access this resource",
    ],
    [new ForbiddenError('from the host only'), 403, 'from the host only'],
    [new Error('anything else'), 500, 'the server encountered a problem and could not process your request'],
  ];
  test('when every mapped error class is listed here, then none is left untested', () => {
    const tested = new Set(rows.map(([err]) => err.constructor));
    for (const [errorClass] of ERROR_RESPONSES) assert.ok(tested.has(errorClass), errorClass.name);
  });
  for (const [err, status, error, headers] of rows) {
    test(`when ${err.constructor.name} is thrown, then ${status}`, () => {
      assert.deepEqual(errorResponse(err), headers ? { status, error, headers } : { status, error });
    });
  }
});

describe('routing', () => {
  test('when the healthcheck is asked, then status, environment and version', async () => {
    const res = await app.inject('/v1/healthcheck');
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = res.json();
    assert.deepEqual(body, {
      status: 'available',
      system_info: { environment: 'development', version: body.system_info.version },
    });
    assert.match(body.system_info.version, /^\d+\.\d+\.\d+/);
  });

  test('when the path is unknown, then 404 with the book message', async () => {
    const res = await app.inject('/v1/nothing-here');
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
  });

  const allowed: [string, string][] = [
    ['/v1/healthcheck', 'GET, OPTIONS'],
    ['/v1/movies', 'GET, OPTIONS, POST'],
    ['/v1/movies/1', 'DELETE, GET, OPTIONS, PATCH'],
  ];
  for (const [url, allow] of allowed) {
    test(`when ${url} gets a method it lacks, then 405 with Allow: ${allow}`, async () => {
      const res = await app.inject({ method: 'PUT', url });
      assert.equal(res.statusCode, 405);
      assert.equal(res.headers.allow, allow);
      assert.deepEqual(res.json(), { error: 'the PUT method is not supported for this resource' });
    });
    test(`when ${url} gets OPTIONS, then 200, empty body, Allow: ${allow}`, async () => {
      const res = await app.inject({ method: 'OPTIONS', url });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers.allow, allow);
      assert.equal(res.body, '');
    });
  }

  test('when HEAD is sent, then 405 like the book router', async () => {
    const res = await app.inject({ method: 'HEAD', url: '/v1/healthcheck' });
    assert.equal(res.statusCode, 405);
  });

  test('when any response is sent, then it varies on Origin and Access-Control-Request-Method', async () => {
    for (const url of ['/v1/healthcheck', '/v1/nothing']) {
      const res = await app.inject(url);
      assert.match(String(res.headers.vary), /Origin/);
      assert.match(String(res.headers.vary), /Access-Control-Request-Method/);
    }
  });
});

describe('unexpected failures', () => {
  for (const url of ['/test/throw', '/test/throw-sync']) {
    test(`when a handler throws (${url}), then 500 with the generic message, details only in the log, and the app keeps serving`, async () => {
      const res = await app.inject({ url, headers: { 'x-request-id': `req-${url.length}` } });
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), {
        error: 'the server encountered a problem and could not process your request',
      });
      assert.doesNotMatch(res.body, /boom/);
      const logged = lines.find((l) => l.msg === 'request failed' && l.request_id === `req-${url.length}`);
      assert.ok(logged, 'the failure is logged with the request id');
      assert.match(String((logged.err as { stack: string }).stack), /boom/);
      assert.equal(logged.path, url);
      const after = await app.inject('/v1/healthcheck');
      assert.equal(after.statusCode, 200);
    });
  }

  test('when a query runs longer than 3 s, then PostgreSQL cancels it and the client gets 503 with Retry-After', async () => {
    const started = performance.now();
    const res = await app.inject({ url: '/test/slow-query', headers: { 'x-request-id': 'slow-1' } });
    const elapsed = performance.now() - started;
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.ok(elapsed >= 2900 && elapsed < 3900, `cancelled after ${elapsed} ms`);
    const logged = lines.find((l) => l.msg === 'request failed' && l.request_id === 'slow-1');
    assert.ok(logged, 'the cancelled query is logged');
    assert.equal((logged.err as { code?: string }).code, '57014'); // query_canceled
    const { rows } = await db.query(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%greenlight-slow-query-marker%' AND state = 'active' AND pid <> pg_backend_pid()",
    );
    assert.equal(rows[0].n, 0, 'the query no longer runs on the server');
  });
});

describe('request ids and logs', () => {
  test('when the client sends a sane X-Request-Id, then it is kept and returned', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { 'x-request-id': 'abc-123.DEF_4:5' } });
    assert.equal(res.headers['x-request-id'], 'abc-123.DEF_4:5');
  });

  for (const bad of ['has spaces', 'x'.repeat(129), '<script>', '']) {
    test(`when X-Request-Id is "${bad.slice(0, 20)}", then a fresh UUID replaces it`, async () => {
      const res = await app.inject({ url: '/v1/nothing', headers: { 'x-request-id': bad } });
      assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    });
  }

  test('when a request completes, then exactly one JSON log line describes it', async () => {
    await api({ url: '/v1/movies?page_size=1', headers: { 'x-request-id': 'log-line-1' } });
    const mine = lines.filter((l) => l.request_id === 'log-line-1');
    assert.equal(mine.length, 1);
    const [line] = mine;
    assert.equal(line?.msg, 'request');
    assert.equal(line?.method, 'GET');
    assert.equal(line?.path, '/v1/movies?page_size=1');
    assert.equal(line?.status, 200);
    assert.equal(typeof line?.duration_ms, 'number');
  });
});

describe('edge requests', () => {
  test('when the path has a malformed %-escape, then 404 in the book format with a request id', async () => {
    const res = await app.inject('/v1/movies/%zz');
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
    assert.ok(res.headers['x-request-id']);
  });

  test('when the Authorization header is empty, then the request is anonymous, as in the book', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { authorization: '' } });
    assert.equal(res.statusCode, 200);
  });
});

describe('/debug/vars cmdline', () => {
  test('when secrets are on the command line, then they are redacted', () => {
    assert.deepEqual(
      redactSecrets([
        'node',
        'main.ts',
        '-db-dsn',
        'postgres://u:pw@h/db',
        '--smtp-password=hunter2',
        '-port',
        '1',
      ]),
      ['node', 'main.ts', '-db-dsn', 'REDACTED', '--smtp-password=REDACTED', '-port', '1'],
    );
  });
});
