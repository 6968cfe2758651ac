// The OpenAPI document: valid for an independent OpenAPI 3.1 validator, complete for every
// route, the same from the CLI as from the server, and the one source of the body decoder's
// field rules. Also: Deprecation/Sunset headers and response compression.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { RouteOptions } from 'fastify';
import { CredentialsBody, PasswordResetBody, RegisterUserBody } from '../src/accounts/user.ts';
import { CreateMovieBody, UpdateMovieBody } from '../src/movies/movie.ts';
import { inputShape } from '../src/platform/json-body.ts';
import { buildTestApp, createMovie } from './helpers.ts';
import { run } from './processes.ts';

type Operation = {
  operationId?: string;
  summary?: string;
  tags?: string[];
  security?: unknown[];
  deprecated?: boolean;
  parameters?: { in: string; name: string }[];
  requestBody?: unknown;
  responses: Record<string, { description: string; headers?: Record<string, unknown> }>;
};
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const routes: RouteOptions[] = [];
const since = new Date('2026-01-01T00:00:00Z');
const sunset = new Date('2027-06-30T00:00:00Z');
const { app, api } = await buildTestApp({
  configure: (instance) => {
    instance.addHook('onRoute', (route) => {
      routes.push(route);
    });
    // In a plugin, so it is added after the document's generator, as the app's own routes are.
    instance.register(async (child) => {
      child.get(
        '/v1/retiring',
        {
          config: { deprecation: { since, sunset, link: 'https://example.com/migrate' } },
          schema: { operationId: 'retiring', response: { 200: { type: 'object', properties: {} } } },
        },
        async () => ({}),
      );
    });
  },
});
const doc = app.swagger() as unknown as Document;

// Writes that read no body.
const BODYLESS = [
  'POST /api/v1/auth/logout-all',
  'POST /api/v1/orders/:id/cancel',
  'POST /v1/admin/profile',
  'POST /v1/admin/heap-snapshot',
];

const openApiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');

describe('the OpenAPI document', () => {
  test('when an independent OpenAPI 3.1 validator reads it, then it is valid', async () => {
    const result = await new Validator().validate(structuredClone(doc) as never);
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
  });

  test('when a route is not hidden, then its schema is complete: operation, parameters, body, every status described', () => {
    const visible = routes.filter((r) => !(r.schema as { hide?: boolean } | undefined)?.hide);
    assert.ok(visible.length >= 14, `only ${visible.length} routes`);
    for (const route of visible) {
      if (route.url === '/v1/retiring') continue;
      for (const method of [route.method].flat()) {
        const where = `${method} ${route.url}`;
        const operation = doc.paths[openApiPath(route.url)]?.[method.toLowerCase()];
        assert.ok(operation, `${where} is missing from the document`);
        assert.ok(operation.operationId && operation.summary && operation.tags?.length, `${where}: name it`);
        assert.ok(operation.security, `${where}: say whether it needs a token`);
        const statuses = Object.keys(operation.responses);
        // A WebSocket route succeeds with 101 Switching Protocols.
        assert.ok(
          statuses.some((s) => s.startsWith('2')) ||
            (route.wsHandler !== undefined && statuses.includes('101')),
          `${where}: no success response`,
        );
        assert.ok(statuses.includes('429'), `${where}: no 429`);
        // A route that reads credentials refuses bad ones.
        if (operation.security?.length) assert.ok(statuses.includes('401'), `${where}: no 401`);
        for (const [status, answer] of Object.entries(operation.responses)) {
          assert.notEqual(answer.description, 'Default Response', `${where} ${status}: describe it`);
          assert.ok(answer.headers?.['X-Request-Id'], `${where} ${status}: X-Request-Id`);
        }
        for (const name of route.url.match(/:(\w+)/g) ?? []) {
          assert.ok(
            operation.parameters?.some((p) => p.in === 'path' && p.name === name.slice(1)),
            `${where}: path parameter ${name}`,
          );
        }
        if (['POST', 'PUT', 'PATCH'].includes(method) && !BODYLESS.includes(where)) {
          assert.ok(operation.requestBody, `${where}: body`);
        }
      }
    }
  });

  test('when a route is hidden, then it is a 405/OPTIONS fallback or an asset of the docs page', () => {
    const hidden = routes.filter((r) => (r.schema as { hide?: boolean } | undefined)?.hide);
    assert.ok(hidden.length > 0);
    for (const route of hidden) {
      const methods = [route.method].flat();
      const fallback = methods.includes('OPTIONS');
      assert.ok(fallback || route.url.startsWith('/docs'), `${methods} ${route.url} is hidden`);
    }
  });

  test('when the server and `greenlight openapi` produce it, then they agree', async (t) => {
    const served = await app.inject('/v1/openapi.json');
    assert.equal(served.statusCode, 200);
    const cli = await run(t, ['openapi', '-env', 'development']);
    assert.equal(cli.code, 0, cli.stderr);
    const fromCli = JSON.parse(cli.stdout) as Document;
    delete fromCli.paths['/v1/retiring'];
    const fromServer = served.json() as Document;
    delete fromServer.paths['/v1/retiring'];
    assert.deepEqual(fromCli, fromServer);
  });

  test('when the decoder reads a body, then its field rules come from the schema in the document', () => {
    assert.deepEqual(inputShape(CreateMovieBody), {
      title: 'string',
      year: 'int32',
      runtime: 'runtime',
      genres: 'string[]',
    });
    assert.deepEqual(inputShape(UpdateMovieBody), {
      title: 'string?',
      year: 'int32?',
      runtime: 'runtime?',
      genres: 'string[]?',
    });
    assert.deepEqual(inputShape(RegisterUserBody), { name: 'string', email: 'string', password: 'string' });
    assert.deepEqual(inputShape(CredentialsBody), { email: 'string', password: 'string' });
    assert.deepEqual(inputShape(PasswordResetBody), { password: 'string', token: 'string' });
    const createBody = doc.paths['/v1/movies']?.post?.requestBody as {
      content: Record<string, { schema: { properties: Record<string, { pattern?: string }> } }>;
    };
    assert.equal(createBody.content['application/json']?.schema.properties.runtime?.pattern, '^[0-9]+ mins$');
  });
});

describe('versioning', () => {
  test('when a route is marked deprecated, then it answers with Deprecation and Sunset and the document says so', async () => {
    const res = await app.inject('/v1/retiring');
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.deprecation, `@${since.getTime() / 1000}`);
    assert.equal(res.headers.sunset, 'Wed, 30 Jun 2027 00:00:00 GMT');
    assert.equal(res.headers.link, '<https://example.com/migrate>; rel="deprecation"');
    assert.equal(doc.paths['/v1/retiring']?.get?.deprecated, true);
    const current = await app.inject('/v1/healthcheck');
    assert.equal(current.headers.deprecation, undefined);
    assert.equal(doc.paths['/v1/healthcheck']?.get?.deprecated, undefined);
  });
});

describe('compression', () => {
  test('when a response is over 1 KB and the client accepts br or gzip, then it is compressed; otherwise not', async () => {
    for (let i = 0; i < 12; i++) await createMovie(api, { title: `Compressible Movie Number ${i}` });
    const plain = await api('/v1/movies');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.rawPayload.length > 1024, `${plain.rawPayload.length} bytes`);

    const br = await api({ url: '/v1/movies', headers: { 'accept-encoding': 'br, gzip' } });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.ok(br.rawPayload.length < plain.rawPayload.length);
    assert.deepEqual(JSON.parse(brotliDecompressSync(br.rawPayload).toString()), plain.json());

    const gzip = await api({ url: '/v1/movies', headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gzip.headers['content-encoding'], 'gzip');
    assert.deepEqual(JSON.parse(gunzipSync(gzip.rawPayload).toString()), plain.json());

    const small = await api({ url: '/v1/healthcheck', headers: { 'accept-encoding': 'br, gzip' } });
    assert.equal(small.headers['content-encoding'], undefined, 'under 1 KB stays as it is');
  });
});
