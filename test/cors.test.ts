import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { buildTestApp, createTestDatabase } from './helpers.ts';

const TRUSTED = 'http://localhost:9000';
const ALSO_TRUSTED = 'https://example.com';
const UNTRUSTED = 'https://evil.example.net';
const ORIGINS = ['-cors-trusted-origins', `${TRUSTED} ${ALSO_TRUSTED}`];

const dsn = await createTestDatabase();
const { app, api } = await buildTestApp({ dsn, flags: ORIGINS });

function varyOf(res: LightMyRequestResponse): string[] {
  const vary = res.headers.vary;
  const text = Array.isArray(vary) ? vary.join(', ') : (vary ?? '');
  return text
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter(Boolean);
}

function assertNoCredentialsNorWildcard(res: LightMyRequestResponse): void {
  assert.notEqual(res.headers['access-control-allow-origin'], '*');
  assert.equal(res.headers['access-control-allow-credentials'], undefined);
}

function assertEchoes(res: LightMyRequestResponse, origin: string): void {
  assert.equal(res.headers['access-control-allow-origin'], origin);
  assertNoCredentialsNorWildcard(res);
}

function assertNoCors(res: LightMyRequestResponse): void {
  assert.equal(res.headers['access-control-allow-origin'], undefined);
  assert.equal(res.headers['access-control-allow-methods'], undefined);
  assert.equal(res.headers['access-control-allow-headers'], undefined);
  assert.equal(res.headers['access-control-allow-credentials'], undefined);
}

function preflight(
  url: string,
  origin: string,
  extra: Record<string, string> = {},
  remoteAddress?: string,
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'OPTIONS',
    url,
    remoteAddress,
    headers: { origin, 'access-control-request-method': 'PUT', ...extra },
  });
}

function assertPreflightAnswer(res: LightMyRequestResponse, origin: string): void {
  assert.equal(res.statusCode, 200);
  assert.equal(res.body, '');
  assertEchoes(res, origin);
  assert.equal(res.headers['access-control-allow-methods'], 'OPTIONS, PUT, PATCH, DELETE');
  assert.equal(res.headers['access-control-allow-headers'], 'Authorization, Content-Type');
}

describe('CORS on simple requests', () => {
  test('when a trusted origin asks, then a 200 echoes that origin', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { origin: TRUSTED } });
    assert.equal(res.statusCode, 200);
    assertEchoes(res, TRUSTED);
  });

  test('when the second trusted origin asks, then that very origin is echoed', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { origin: ALSO_TRUSTED } });
    assert.equal(res.statusCode, 200);
    assertEchoes(res, ALSO_TRUSTED);
  });

  test('when a trusted origin gets a 404, then the error still echoes the origin', async () => {
    const res = await app.inject({ url: '/v1/nowhere', headers: { origin: TRUSTED } });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
    assertEchoes(res, TRUSTED);
  });

  test('when a trusted origin is anonymous on a protected route, then the 401 echoes the origin', async () => {
    const res = await app.inject({ url: '/v1/movies', headers: { origin: TRUSTED } });
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: 'you must be authenticated to access this resource' });
    assertEchoes(res, TRUSTED);
  });

  test('when a trusted origin sends a bogus token, then the 401 echoes the origin', async () => {
    const res = await app.inject({
      url: '/v1/healthcheck',
      headers: { origin: TRUSTED, authorization: 'Bearer XXX' },
    });
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: 'invalid or missing authentication token' });
    assertEchoes(res, TRUSTED);
  });

  test('when a trusted origin sends an invalid movie, then the 422 echoes the origin', async () => {
    const res = await api({
      method: 'POST',
      url: '/v1/movies',
      headers: { origin: TRUSTED },
      payload: { title: '', year: 2001, runtime: '100 mins', genres: ['drama'] },
    });
    assert.equal(res.statusCode, 422);
    assert.equal((res.json() as { error: Record<string, string> }).error.title, 'must be provided');
    assertEchoes(res, TRUSTED);
  });

  test('when an untrusted origin asks, then the answer carries no CORS headers', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { origin: UNTRUSTED } });
    assert.equal(res.statusCode, 200);
    assertNoCors(res);
  });

  test('when an origin only resembles a trusted one, then it is not echoed', async () => {
    for (const origin of [
      'http://localhost:9001',
      'https://localhost:9000',
      'http://localhost:9000/',
      'https://example.com.evil.net',
      'null',
      '*',
    ]) {
      const res = await app.inject({ url: '/v1/healthcheck', headers: { origin } });
      assert.equal(res.statusCode, 200, origin);
      assertNoCors(res);
    }
  });

  test('when no Origin is sent, then the answer carries no CORS headers', async () => {
    const res = await app.inject({ url: '/v1/healthcheck' });
    assert.equal(res.statusCode, 200);
    assertNoCors(res);
  });

  test('when no origins are trusted, then even the usual dev origin is not echoed', async () => {
    const { app: closed } = await buildTestApp({ dsn });
    const res = await closed.inject({ url: '/v1/healthcheck', headers: { origin: TRUSTED } });
    assert.equal(res.statusCode, 200);
    assertNoCors(res);
    const pre = await closed.inject({
      method: 'OPTIONS',
      url: '/v1/healthcheck',
      headers: { origin: TRUSTED, 'access-control-request-method': 'PUT' },
    });
    assert.equal(pre.statusCode, 200);
    assertNoCors(pre);
  });
});

describe('CORS preflight', () => {
  test('when a trusted origin sends a preflight, then 200 with empty body and the allowed methods and headers', async () => {
    assertPreflightAnswer(await preflight('/v1/movies/1', TRUSTED), TRUSTED);
    assertPreflightAnswer(await preflight('/v1/tokens/authentication', ALSO_TRUSTED), ALSO_TRUSTED);
  });

  test('when a trusted preflight targets an unknown path, then it is still answered by CORS', async () => {
    assertPreflightAnswer(await preflight('/v1/nowhere', TRUSTED), TRUSTED);
  });

  test('when a trusted preflight carries a bogus bearer token, then it is answered before authentication', async () => {
    const res = await preflight('/v1/movies/1', TRUSTED, { authorization: 'Bearer XXX' });
    assertPreflightAnswer(res, TRUSTED);
    assert.equal(res.headers['www-authenticate'], undefined);
  });

  test('when many trusted preflights come from one address, then they are answered before rate limiting', async () => {
    const { app: limited } = await buildTestApp({
      dsn,
      flags: [...ORIGINS, '-limiter-enabled=true', '-limiter-rps', '0.01', '-limiter-burst', '1'],
    });
    const remoteAddress = '192.0.2.77';
    for (let i = 0; i < 10; i++) {
      const res = await limited.inject({
        method: 'OPTIONS',
        url: '/v1/movies',
        remoteAddress,
        headers: { origin: TRUSTED, 'access-control-request-method': 'POST' },
      });
      assertPreflightAnswer(res, TRUSTED);
    }
    // The limiter is on: ordinary requests from that address are limited after the burst.
    const first = await limited.inject({
      url: '/v1/healthcheck',
      remoteAddress,
      headers: { origin: TRUSTED },
    });
    assert.equal(first.statusCode, 200);
    const second = await limited.inject({
      url: '/v1/healthcheck',
      remoteAddress,
      headers: { origin: TRUSTED },
    });
    assert.equal(second.statusCode, 429);
    assert.deepEqual(second.json(), { error: 'rate limit exceeded' });
    assertEchoes(second, TRUSTED);
  });

  test('when an untrusted origin sends a preflight, then it is a plain OPTIONS with Allow and no CORS headers', async () => {
    const res = await preflight('/v1/movies/1', UNTRUSTED);
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers.allow, 'DELETE, GET, OPTIONS, PATCH');
    assertNoCors(res);
  });

  test('when a trusted origin sends OPTIONS without Access-Control-Request-Method, then it is a plain OPTIONS', async () => {
    const res = await app.inject({ method: 'OPTIONS', url: '/v1/movies/1', headers: { origin: TRUSTED } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, '');
    assert.equal(res.headers.allow, 'DELETE, GET, OPTIONS, PATCH');
    assertEchoes(res, TRUSTED);
    assert.equal(res.headers['access-control-allow-methods'], undefined);
    assert.equal(res.headers['access-control-allow-headers'], undefined);
  });
});

describe('Vary', () => {
  test('when any request is answered, then Vary names Origin and Access-Control-Request-Method', async () => {
    const responses = [
      await app.inject({ url: '/v1/healthcheck' }),
      await app.inject({ url: '/v1/healthcheck', headers: { origin: TRUSTED } }),
      await app.inject({ url: '/v1/healthcheck', headers: { origin: UNTRUSTED } }),
      await app.inject({ url: '/v1/nowhere', headers: { origin: TRUSTED } }),
      await app.inject({ url: '/v1/movies', headers: { origin: TRUSTED } }),
      await app.inject({ method: 'PUT', url: '/v1/healthcheck', headers: { origin: TRUSTED } }),
      await preflight('/v1/movies/1', TRUSTED),
      await preflight('/v1/movies/1', UNTRUSTED),
    ];
    for (const res of responses) {
      const vary = varyOf(res);
      assert.ok(vary.includes('origin'), `${res.statusCode}: ${res.headers.vary}`);
      assert.ok(vary.includes('access-control-request-method'), `${res.statusCode}: ${res.headers.vary}`);
    }
  });

  test('when a request is not a trusted preflight, then Vary also names Authorization', async () => {
    const responses = [
      await app.inject({ url: '/v1/healthcheck' }),
      await app.inject({ url: '/v1/healthcheck', headers: { origin: TRUSTED } }),
      await app.inject({ url: '/v1/nowhere', headers: { origin: TRUSTED } }),
      await app.inject({ url: '/v1/movies', headers: { origin: TRUSTED } }),
      await app.inject({ url: '/v1/healthcheck', headers: { origin: TRUSTED, authorization: 'Bearer XXX' } }),
      await api({ url: '/v1/movies', headers: { origin: TRUSTED } }),
      await preflight('/v1/movies/1', UNTRUSTED),
    ];
    for (const res of responses) {
      const vary = varyOf(res);
      assert.ok(vary.includes('authorization'), `${res.statusCode}: ${res.headers.vary}`);
      assert.equal(vary.filter((v) => v === 'origin').length, 1, `${res.headers.vary}`);
    }
  });
});
