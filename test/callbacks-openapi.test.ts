// The callback listener's own OpenAPI document: valid for an independent validator, complete
// for every route, the same from the CLI as from the listener, and true on the wire: every
// documented status of every operation provoked against a live listener and checked against
// the document (status, X-Request-Id, body schema).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { startTestCallbacks, startUpstream } from './callbacks-helpers.ts';
import { dsnFor } from './helpers.ts';
import { run } from './processes.ts';

type Answer = {
  description: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema: object }>;
};
type Operation = {
  operationId: string;
  summary?: string;
  tags?: string[];
  security?: unknown[];
  requestBody?: unknown;
  responses: Record<string, Answer>;
};
type Document = {
  openapi: string;
  info: { title: string };
  paths: Record<string, Record<string, Operation>>;
};

// Documented because it happens, but not from a loopback test client.
const NOT_PROVOKED: Readonly<Record<string, string>> = {
  'callbackMetrics 403': 'only a client that is not on loopback is refused',
};

const { url } = await startUpstream();
const live = await startTestCallbacks(url);
const dead = await startTestCallbacks(url, { dsn: dsnFor('no_such_database') });
const doc = (await (await fetch(`${live.url}/openapi.json`)).json()) as Document;
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
const seen = new Set<string>();

async function call(base: string, method: string, path: string, body?: string): Promise<number> {
  const res = await fetch(`${base}${path}`, { method, body });
  const text = await res.text();
  const where = `${method} ${path} → ${res.status} ${text.slice(0, 200)}`;
  const operation = doc.paths[new URL(path, 'http://x').pathname]?.[method.toLowerCase()];
  assert.ok(operation, `${where}: not in the document`);
  const answer = operation.responses[String(res.status)];
  assert.ok(answer, `${where}: status not documented`);
  seen.add(`${operation.operationId} ${res.status}`);
  assert.ok(res.headers.get('x-request-id'), `${where}: X-Request-Id`);
  const json = answer.content?.['application/json'];
  if (json) {
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, where);
    assert.ok(ajv.validate(json.schema, JSON.parse(text)), `${where}: ${ajv.errorsText()}`);
  }
  return res.status;
}

describe("the callback listener's OpenAPI document", () => {
  test('when an independent OpenAPI 3.1 validator reads it, then it is valid and names the callback service', async () => {
    const result = await new Validator().validate(structuredClone(doc) as never);
    assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
    assert.equal(doc.info.title, 'Greenlight callback service');
  });

  test('when a route is served, then it is in the document with a name, a security statement and every status described', () => {
    assert.deepEqual(Object.keys(doc.paths).sort(), [
      '/',
      '/callback',
      '/metrics',
      '/objects',
      '/openapi.json',
    ]);
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const where = `${method.toUpperCase()} ${path}`;
        assert.ok(operation.operationId && operation.summary && operation.tags?.length, `${where}: name it`);
        assert.deepEqual(operation.security, [], `${where}: no credentials`);
        for (const [status, answer] of Object.entries(operation.responses)) {
          assert.notEqual(answer.description, 'Default Response', `${where} ${status}: describe it`);
          assert.ok(answer.headers?.['X-Request-Id'], `${where} ${status}: X-Request-Id`);
        }
      }
    }
    assert.ok(doc.paths['/callback']?.post?.requestBody, 'POST /callback: body');
  });

  test('when `greenlight openapi callbacks` prints it, then it is the one the listener serves', async (t) => {
    const cli = await run(t, ['openapi', 'callbacks', '-env', 'development']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout), doc);
  });

  test('when every operation is driven to each documented status, then every answer matches the document', async () => {
    assert.equal(await call(live.url, 'POST', '/callback', '{"object_ids": [1, 2, 2]}'), 200);
    for (const bad of [
      '{',
      '{"object_ids": [-1]}',
      '{"object_ids": "1"}',
      '{}',
      `{"object_ids": [${'1,'.repeat(10_000)}1]}`,
    ]) {
      assert.equal(await call(live.url, 'POST', '/callback', bad), 400, bad.slice(0, 40));
    }
    assert.equal(
      await call(live.url, 'POST', '/callback', `{"object_ids": [${'1,'.repeat(600_000)}1]}`),
      400,
    );
    assert.equal(await call(live.url, 'GET', '/'), 200);
    assert.equal(await call(live.url, 'GET', '/objects?limit=5'), 200);
    assert.equal(await call(live.url, 'GET', '/objects?limit=0'), 400);
    assert.equal(await call(live.url, 'GET', '/objects?limit=ten'), 400);
    assert.equal(await call(live.url, 'GET', '/metrics'), 200);
    assert.equal(await call(live.url, 'GET', '/openapi.json'), 200);
    assert.equal(await call(dead.url, 'POST', '/callback', '{"object_ids": [1]}'), 503);
    assert.equal(await call(dead.url, 'GET', '/'), 503);
    assert.equal(await call(dead.url, 'GET', '/objects'), 503);

    const documented = Object.values(doc.paths).flatMap((operations) =>
      Object.values(operations).flatMap((o) => Object.keys(o.responses).map((s) => `${o.operationId} ${s}`)),
    );
    const missed = documented.filter((key) => !seen.has(key) && !(key in NOT_PROVOKED));
    assert.deepEqual(missed, [], 'documented but never provoked');
  });
});
