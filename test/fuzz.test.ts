// Generated malformed requests on every route, as an attacker sends them: odd methods, paths
// that cannot name a resource, queries with NUL and huge numbers, garbage headers and bodies
// from random bytes to valid JSON of every wrong type. Whatever arrives, the answer is below
// 500, in the API's JSON envelope, with a request id, and nothing is logged as a server error.
import assert from 'node:assert/strict';
import { request as httpRequest, METHODS } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { MAX_BODY_BYTES } from '../src/platform/json-body.ts';
import { buildTestApp, createMovie } from './helpers.ts';

const TRUSTED_ORIGIN = 'https://trusted.example';
const { app, api, lines, token } = await buildTestApp({ flags: ['-cors-trusted-origins', TRUSTED_ORIGIN] });
// Also listening, for requests whose raw bytes app.inject would normalise (dot segments,
// unencoded characters).
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as AddressInfo;
// Movies for the item routes to find, update and delete: most generated ids are small.
for (let i = 0; i < 50; i++) await createMovie(api);

// A route and the fields its body has (none: it reads no body).
type Route = Readonly<{ method: string; path: string; fields: readonly string[] }>;

const MOVIE_FIELDS = ['title', 'year', 'runtime', 'genres'];
const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/v1/healthcheck', fields: [] },
  { method: 'GET', path: '/debug/vars', fields: [] },
  { method: 'GET', path: '/metrics', fields: [] },
  { method: 'GET', path: '/v1/openapi.json', fields: [] },
  { method: 'GET', path: '/v1/movies', fields: [] },
  { method: 'POST', path: '/v1/movies', fields: MOVIE_FIELDS },
  { method: 'GET', path: '/v1/movies/:id', fields: [] },
  { method: 'PATCH', path: '/v1/movies/:id', fields: MOVIE_FIELDS },
  { method: 'DELETE', path: '/v1/movies/:id', fields: [] },
  { method: 'POST', path: '/v1/users', fields: ['name', 'email', 'password'] },
  { method: 'PUT', path: '/v1/users/activated', fields: ['token'] },
  { method: 'PUT', path: '/v1/users/password', fields: ['password', 'token'] },
  { method: 'POST', path: '/v1/tokens/authentication', fields: ['email', 'password'] },
  { method: 'POST', path: '/v1/tokens/activation', fields: ['email'] },
  { method: 'POST', path: '/v1/tokens/password-reset', fields: ['email'] },
];
const KNOWN_PATHS = [...new Set(ROUTES.map((r) => r.path.replace(':id', '1')))];

const FIELD_NAMES = [
  'title',
  'year',
  'runtime',
  'genres',
  'name',
  'email',
  'password',
  'token',
  'id',
  'version',
  'created_at',
  'activated',
  '__proto__',
  'Title',
];

const char = (min: number, max: number) => fc.integer({ min, max }).map((c) => String.fromCharCode(c));
// What a header value can carry over the wire: visible ASCII, space, and obs-text bytes.
const headerText = (maxLength: number) =>
  fc.string({ unit: fc.oneof({ weight: 9, arbitrary: char(0x20, 0x7e) }, char(0x80, 0xff)), maxLength });
const base32 = fc.string({
  unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'),
  minLength: 26,
  maxLength: 26,
});
const repeated = (units: readonly string[], min: number, max: number) =>
  fc.tuple(fc.constantFrom(...units), fc.integer({ min, max })).map(([unit, n]) => unit.repeat(n));

// `arbitrary` once in `oneIn` draws, otherwise null (what shrinking goes towards).
const sometimes = <T>(arbitrary: fc.Arbitrary<T>, oneIn: number) =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });

// --- paths ---------------------------------------------------------------------------------

const pathChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(..."abcdefxyzABZ0123456789-._~!$&'()*+,;=:@".split('')) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('%00', '%2F', '%2e', '%20', '%25', '%', '%z', '%E2%82', '%C3%A9', '%FF'),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
);
const segment = fc.string({ unit: pathChar, maxLength: 12 });

const idArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 60 }).map(String) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '0',
      '-1',
      '+1',
      '01',
      '1.0',
      '1e3',
      '0x1f',
      '9223372036854775807',
      '9223372036854775808',
      '-9223372036854775808',
      '18446744073709551616',
      '2147483648',
      'NaN',
      'null',
      '..',
      '.',
      '%2e%2e',
      '%00',
      '1%00',
      '%',
      '%zz',
      '%E2%82',
      '%C3%A9',
      '%ED%A0%80',
      'é',
      '😀',
      '١٢',
    ),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String) },
  { weight: 1, arbitrary: segment },
  // around the router's 4,096-character limit on a parameter, before and after decoding
  { weight: 1, arbitrary: repeated(['1', 'a', '%41', 'é'], 4_000, 5_200) },
);

const PATH_MUTATIONS: ReadonlyArray<(path: string) => string> = [
  (p) => `${p}/`,
  (p) => `/${p}`,
  (p) => p.replace('/v1/', '/v1//'),
  (p) => `${p}/..`,
  (p) => `${p}/../healthcheck`,
  (p) => `/v1/..${p}`,
  (p) => p.toUpperCase(),
  (p) => `${p}/extra`,
  (p) => p.replaceAll('/', '%2F'),
  (p) => `${p}%00`,
  (p) => `${p};x=1`,
  (p) => `${p}#fragment`,
  (p) => `${p}/.`,
  (p) => p.replace('/v1/', '/v2/'),
  (p) => `${p}.json`,
  (p) => p.replace('/v1/', '/v1/%2e%2e/v1/'),
];

const itemPath = idArb.map((id) => `/v1/movies/${id}`);
// Swagger UI's HTML pages are the one place that is not the JSON API.
const notDocsPage = (path: string) => {
  try {
    return !new URL(
      path.startsWith('//') ? `http://localhost${path}` : path,
      'http://localhost',
    ).pathname.startsWith('/docs');
  } catch {
    return true;
  }
};
const pathArb = fc
  .oneof(
    { weight: 3, arbitrary: fc.constantFrom(...KNOWN_PATHS) },
    { weight: 3, arbitrary: itemPath },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.oneof(fc.constantFrom(...KNOWN_PATHS), itemPath), fc.constantFrom(...PATH_MUTATIONS))
        .map(([path, mutate]) => mutate(path)),
    },
    { weight: 1, arbitrary: fc.array(segment, { maxLength: 6 }).map((s) => `/${s.join('/')}`) },
  )
  .filter(notDocsPage);

// --- query strings -------------------------------------------------------------------------

const QUERY_KEYS = ['title', 'genres', 'page', 'page_size', 'sort'];
const queryKey = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...QUERY_KEYS) },
  { weight: 1, arbitrary: fc.constantFrom(...QUERY_KEYS).map((k) => `${k}[]`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'page[a]',
      'sort[0]',
      'title[__proto__]',
      '__proto__',
      'constructor',
      '',
      '%00',
      'PAGE',
    ),
  },
  { weight: 1, arbitrary: segment },
);
const queryValue = fc.oneof(
  fc.constantFrom(
    '',
    '0',
    '1',
    '-1',
    '100',
    '101',
    '10000000',
    '10000001',
    '2147483647',
    '2147483648',
    '9223372036854775808',
    '99999999999999999999999',
    '1e3',
    '1.5',
    '0x10',
    '%201',
    '+1',
    'Infinity',
  ),
  fc.constantFrom(
    'id',
    '-id',
    'title',
    '-title',
    '-year',
    'runtime',
    '--id',
    'ID',
    'id,title',
    'id;drop table movies',
    '-',
  ),
  fc.constantFrom(
    '%00',
    'a%00b',
    'drama,%00',
    '%',
    '%zz',
    '%E2%82',
    '%C0%80',
    '%ED%A0%80',
    '%FF',
    '+',
    ',,,',
    'a,,b',
    'drama,drama',
  ),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent),
  fc.string({ unit: 'binary', maxLength: 20 }).map(encodeURIComponent),
  fc.string({ unit: 'grapheme-ascii', maxLength: 20 }),
  repeated(['x', 'é', 'a,', '%00'], 3_000, 6_000),
);
const queryArb = fc
  .array(fc.tuple(queryKey, fc.option(queryValue, { freq: 8 })), { maxLength: 8 })
  .map((pairs) => pairs.map(([k, v]) => (v === null ? k : `${k}=${v}`)).join('&'));

// --- headers -------------------------------------------------------------------------------

const headersArb = fc.record({
  'content-type': sometimes(
    fc.oneof(
      fc.constantFrom(
        'application/json',
        'text',
        '',
        'a/b/c;;;',
        'application/json, text/html',
        'application/json; charset=utf-16',
        'application/json; charset=',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'text/plain',
        ';',
        '/',
        '*/*',
      ),
      headerText(40),
    ),
    2,
  ),
  authorization: sometimes(
    fc.oneof(
      fc.constantFrom(
        'Bearer',
        'Bearer ',
        'bearer',
        'Basic dXNlcjpwYXNz',
        'Digest x',
        'Token abc',
        'Bearer a b',
      ),
      base32.map((t) => `Bearer ${t}`),
      base32.map((t) => `bearer ${t.toLowerCase()}`),
      headerText(60).map((t) => `Bearer ${t}`),
      headerText(60),
    ),
    4,
  ),
  'x-expected-version': sometimes(
    fc.oneof(
      fc.constantFrom(
        '1',
        '0',
        '-1',
        '2',
        '',
        'abc',
        '1.5',
        '1e3',
        ' 1',
        '99999999999999999999',
        '2147483648',
        '1,2',
      ),
      headerText(30),
    ),
    3,
  ),
  'x-request-id': sometimes(
    fc.oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9._:-]{1,140}$/), headerText(200)),
    3,
  ),
  'accept-encoding': sometimes(
    fc.constantFrom('gzip', 'br', 'deflate', 'identity', '*', 'gzip;q=0, br;q=abc', 'zstd'),
    4,
  ),
  origin: sometimes(
    fc.oneof(fc.constantFrom(TRUSTED_ORIGIN, 'null', 'http://evil.example'), headerText(40)),
    4,
  ),
  'access-control-request-method': sometimes(fc.constantFrom('GET', 'PUT', 'DELETE', 'FOO', ''), 6),
});

// --- bodies --------------------------------------------------------------------------------

// Field values are JSON text, so that numbers Go and JavaScript read differently (1.0, 1e400)
// reach the decoder as written.
const textValue = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'a\udfff',
    '\udc00\ud800',
    ' ',
    'drama',
    '102 mins',
    '0 mins',
    '-5 mins',
    '2147483647 mins',
    '2147483648 mins',
    '1 min',
    '1e3 mins',
    'not-an-email',
    'a@b',
    'pa55word',
    'x'.repeat(72),
    'x'.repeat(73),
  ),
  base32,
  // beyond the 500-byte rules and PostgreSQL's index row limit (~2.7 KB)
  repeated(['x', 'é', '😀', '\u0000'], 700, 3_500),
);
const numberText = fc.oneof(
  fc.constantFrom(
    '0',
    '-0',
    '1888',
    '1887',
    '2027',
    '2147483647',
    '2147483648',
    '-2147483648',
    '-2147483649',
    '9223372036854775808',
    '9007199254740993',
    '1.0',
    '1.5',
    '1e3',
    '1E400',
    '-1e-400',
    '100000000000000000000000000000',
  ),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
);
const fieldName = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...FIELD_NAMES) },
  fc.string({ maxLength: 8 }),
);

// Built by hand so that a key may appear twice.
const objectText = (entries: ReadonlyArray<readonly [string, string]>) =>
  `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

const { value: valueText } = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    textValue.map((s) => JSON.stringify(s)),
    numberText,
    fc.constantFrom('true', 'false', 'null', '{}', '[]', '[null]', '[[[]]]'),
    fc.array(tie('value'), { maxLength: 6 }).map((items) => `[${items.join(',')}]`),
    fc.array(fc.tuple(fieldName, tie('value')), { maxLength: 4 }).map(objectText),
  ),
}));
const stringArrayText = fc
  .array(fc.oneof(fc.constantFrom('drama', 'comedy', 'sci-fi'), textValue), { maxLength: 7 })
  .map((items) => JSON.stringify(items));

// Mostly invalid e-mail addresses: a valid one with a valid password reaches bcrypt at cost 12.
const emailText = fc.oneof(
  { weight: 1, arbitrary: fc.emailAddress() },
  {
    weight: 19,
    arbitrary: fc.oneof(
      fc.constantFrom(
        '',
        '@',
        'a@',
        '@b.c',
        'a@@b.c',
        'a@-b.c',
        'a b@c.d',
        'a@b.c\u0000',
        'a\u0000@b.c',
        'ä@b.c',
      ),
      fc.emailAddress().map((e) => `${e}.`),
      textValue,
    ),
  },
);

const json = (value: unknown) => JSON.stringify(value);
const VALID_VALUES: Readonly<Record<string, fc.Arbitrary<string>>> = {
  title: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).map(json),
  year: fc.integer({ min: 1888, max: 2026 }).map(String),
  runtime: fc.integer({ min: 1, max: 300 }).map((n) => json(`${n} mins`)),
  genres: fc
    .uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 5 })
    .map(json),
  name: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).map(json),
  email: emailText.map(json),
  password: fc.string({ unit: 'grapheme-ascii', minLength: 8, maxLength: 30 }).map(json),
  token: base32.map(json),
};
const fieldValue = fc.oneof(textValue.map(json), numberText, valueText, stringArrayText);

// A valid body for the route, then a few edits: a field replaced by a bad value, dropped,
// or repeated; an unknown one added.
const shapedObject = (fields: readonly string[]) =>
  fc
    .tuple(
      fc.tuple(...fields.map((field) => VALID_VALUES[field] ?? fieldValue)),
      fc.array(
        fc.tuple(
          fc.constantFrom('set', 'drop', 'repeat'),
          fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...fields) }, fieldName),
          fieldValue,
        ),
        { maxLength: 3 },
      ),
    )
    .map(([values, edits]) => {
      const entries: [string, string][] = fields.map((field, i) => [field, values[i] as string]);
      for (const [kind, key, value] of edits) {
        const at = entries.findIndex(([k]) => k === key);
        if (kind === 'drop' && at !== -1) entries.splice(at, 1);
        else if (kind === 'set' && at !== -1) entries[at] = [key, value];
        else if (kind !== 'drop') entries.push([key, value]);
      }
      return objectText(entries);
    });

const anyObject = fc.array(fc.tuple(fieldName, valueText), { maxLength: 6 }).map(objectText);

const deepJson = fc
  .tuple(fc.constantFrom('[', '{"a":'), fc.integer({ min: 1, max: 12_000 }), fc.boolean())
  .map(([open, depth, closed]) => {
    const close = open === '[' ? ']' : '}';
    return open.repeat(depth) + (open === '[' ? '' : '1') + (closed ? close.repeat(depth) : '');
  });

// One over the limit, and exactly at it (a valid document whose title is far too long).
const bigDocument = (bytes: number) => {
  const shell = Buffer.from('{"title":""}');
  return Buffer.concat([shell.subarray(0, 10), Buffer.alloc(bytes - shell.length, 'a'), shell.subarray(10)]);
};
const OVERSIZED = [bigDocument(MAX_BODY_BYTES + 1), bigDocument(MAX_BODY_BYTES)];

const bodyArbitrary = (fields: readonly string[]): fc.Arbitrary<string | Buffer | undefined> => {
  const document =
    fields.length === 0
      ? fc.oneof(anyObject, valueText)
      : fc.oneof({ weight: 4, arbitrary: shapedObject(fields) }, anyObject, valueText);
  return fc.oneof(
    { weight: 20, arbitrary: fc.constant(undefined) },
    { weight: 80, arbitrary: document },
    // more than one value, or garbage after one
    {
      weight: 10,
      arbitrary: fc.tuple(document, fc.constantFrom(' {}', '\n[]', 'x', ' 1', ',')).map(([a, b]) => a + b),
    },
    // cut off anywhere
    {
      weight: 20,
      arbitrary: fc.tuple(document, fc.nat()).map(([text, n]) => text.slice(0, n % (text.length + 1))),
    },
    { weight: 10, arbitrary: fc.json() },
    { weight: 10, arbitrary: deepJson },
    { weight: 10, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)) },
    { weight: 10, arbitrary: fc.string({ unit: 'binary', maxLength: 100 }) },
    { weight: 10, arbitrary: fc.constantFrom('', ' ', 'null', '"', '{', '}', '[', '{"title":}', '\ufeff{}') },
    { weight: 1, arbitrary: fc.constantFrom(...OVERSIZED) },
  );
};

const BODIES = new Map(ROUTES.map((route) => [route, bodyArbitrary(route.fields)]));

// --- requests ------------------------------------------------------------------------------

type FuzzRequest = Readonly<{
  identity: 'user' | 'anonymous';
  method: string;
  url: string;
  headers: Readonly<Record<string, string>>;
  body: string | Buffer | undefined;
}>;

const preview = (text: string, max = 300) =>
  text.length <= max ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, max))}… (${text.length} chars)`;

// fast-check prints a failing request with this, so a 1 MiB body stays readable.
function describeRequest(request: FuzzRequest): string {
  const body = request.body === undefined ? 'none' : preview(request.body.toString('latin1'));
  return `${request.identity} ${request.method} ${preview(request.url, 500)} headers=${JSON.stringify(request.headers)} body=${body}`;
}

type Identity = FuzzRequest['identity'];

function fuzzRequest(
  identity: Identity,
  method: string,
  url: string,
  headers: Readonly<Record<string, string | null>>,
  body: FuzzRequest['body'],
): FuzzRequest {
  const { authorization, ...rest } = headers;
  const sent: Record<string, string> = {};
  for (const [name, value] of Object.entries(rest)) if (value !== null) sent[name] = value;
  // `api` sends the user's token; a garbage one is only sent anonymously.
  if (identity === 'anonymous' && typeof authorization === 'string') sent.authorization = authorization;
  const request: FuzzRequest = { identity, method, url, headers: sent, body };
  return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request) });
}

const methodArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') },
  { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
);

const requestArb = (options: { methods: number; paths: number; queries: number }) =>
  fc.constantFrom(...ROUTES).chain((route) =>
    fc
      .record({
        identity: fc.constantFrom<Identity>('user', 'anonymous'),
        method: sometimes(methodArb, options.methods),
        path: sometimes(pathArb, options.paths),
        id: idArb,
        query: sometimes(queryArb, options.queries),
        headers: headersArb,
        body: BODIES.get(route) ?? fc.constant(undefined),
      })
      .map(({ identity, method, path, id, query, headers, body }) =>
        fuzzRequest(
          identity,
          method ?? route.method,
          (path ?? route.path.replace(':id', id)) + (query === null ? '' : `?${query}`),
          headers,
          body,
        ),
      ),
  );

// --- the properties ------------------------------------------------------------------------

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const SUCCESS_ENVELOPES = [
  ['status', 'system_info'],
  ['metadata', 'movies'],
  ['movie'],
  ['message'],
  ['user'],
  ['authentication_token'],
].map((keys) => keys.join());

// What both app.inject and a real socket give back.
type Answer = Readonly<{
  statusCode: number;
  headers: Readonly<Record<string, unknown>>;
  rawPayload: Buffer;
}>;

function decoded(res: Answer): string {
  const encoding = res.headers['content-encoding'];
  if (encoding === 'gzip') return gunzipSync(res.rawPayload).toString();
  if (encoding === 'br') return brotliDecompressSync(res.rawPayload).toString();
  if (encoding === 'deflate') return inflateSync(res.rawPayload).toString();
  assert.equal(encoding, undefined, `unexpected content-encoding ${encoding}`);
  return res.rawPayload.toString();
}

function isSuccessEnvelope(body: Record<string, unknown>): boolean {
  if (SUCCESS_ENVELOPES.includes(Object.keys(body).sort().join())) return true;
  return ('cmdline' in body && 'memstats' in body) || 'openapi' in body;
}

function assertEnvelope(request: FuzzRequest, res: Answer): void {
  const text = decoded(res);
  const answer = `${res.statusCode} ${JSON.stringify(res.headers)} ${preview(text, 1_000)}`;
  assert.ok(res.statusCode >= 200 && res.statusCode < 500, `status: ${answer}`);
  const id = res.headers['x-request-id'];
  assert.ok(typeof id === 'string' && SANE_REQUEST_ID.test(id), `request id: ${answer}`);
  if (request.method === 'HEAD') {
    assert.equal(text, '', `HEAD with a body: ${answer}`);
    return;
  }
  if (request.method === 'OPTIONS' && res.statusCode === 200) {
    assert.equal(text, '', `OPTIONS with a body: ${answer}`);
    assert.ok(
      res.headers.allow || res.headers['access-control-allow-methods'],
      `OPTIONS without Allow: ${answer}`,
    );
    return;
  }
  if (res.statusCode === 200 && String(res.headers['content-type']).startsWith('text/plain')) {
    assert.equal(new URL(request.url, 'http://localhost').pathname, '/metrics', `text/plain: ${answer}`);
    return;
  }
  assert.match(String(res.headers['content-type']), /^application\/json/, `content type: ${answer}`);
  let body: unknown;
  assert.doesNotThrow(() => {
    body = JSON.parse(text);
  }, `not JSON: ${answer}`);
  assert.ok(typeof body === 'object' && body !== null && !Array.isArray(body), `not an object: ${answer}`);
  const object = body as Record<string, unknown>;
  if (res.statusCode >= 400) {
    assert.deepEqual(Object.keys(object), ['error'], `error envelope: ${answer}`);
    const error = object.error;
    const fieldErrors =
      res.statusCode === 422 &&
      typeof error === 'object' &&
      error !== null &&
      Object.keys(error).length > 0 &&
      Object.values(error).every((message) => typeof message === 'string' && message !== '');
    assert.ok((typeof error === 'string' && error !== '') || fieldErrors, `error envelope: ${answer}`);
  } else {
    assert.ok(isSuccessEnvelope(object), `success envelope: ${answer}`);
  }
}

const anonymous = (options: InjectOptions) => app.inject(options);

// The request as a client writes it on a new connection: the path as given, except for the
// characters Node's client refuses to send unencoded.
function overSocket(request: FuzzRequest): Promise<Answer> {
  const headers: Record<string, string> = { ...request.headers, connection: 'close' };
  if (request.identity === 'user') headers.authorization = `Bearer ${token}`;
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  if (body !== undefined) headers['content-length'] = String(body.length);
  const path = request.url.replace(/[^\u0021-\u00ff]/gu, (c) => encodeURIComponent(c));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: request.method, path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            statusCode: res.statusCode ?? 0,
            headers: res.headers,
            rawPayload: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const injected = (request: FuzzRequest) =>
  (request.identity === 'user' ? api : anonymous)({
    method: request.method as InjectOptions['method'],
    url: request.url,
    headers: request.headers,
    ...(request.body === undefined ? {} : { payload: request.body }),
  });

const checked = (transport: (request: FuzzRequest) => Promise<Answer>) => async (request: FuzzRequest) => {
  const logged = lines.length;
  const res = await transport(request);
  assertEnvelope(request, res);
  const errors = lines.slice(logged).filter((line) => line.level === 'error' || line.level === 'fatal');
  assert.deepEqual(errors, [], `logged as a server error: ${res.statusCode} ${preview(decoded(res))}`);
};
const send = checked(injected);

test('when any method, path, query, header and body is sent to any route, then every answer is below 500 in the JSON envelope with a request id', async () => {
  await fc.assert(fc.asyncProperty(requestArb({ methods: 3, paths: 2, queries: 3 }), send), {
    numRuns: 2_500,
  });
});

test('when each route gets its own method and path with malformed bodies and headers, then every answer is below 500 in the envelope with a request id', async () => {
  await fc.assert(fc.asyncProperty(requestArb({ methods: 20, paths: 20, queries: 10 }), send), {
    numRuns: 2_500,
  });
});

test('when the movie list is queried with malformed filters, then every answer is below 500 in the envelope with a request id', async () => {
  const listRequest = fc
    // mostly as the user: an anonymous list request is refused before its query is read
    .record({
      identity: fc.constantFrom<Identity>('user', 'user', 'user', 'anonymous'),
      query: queryArb,
      headers: headersArb,
    })
    .map(({ identity, query, headers }) =>
      fuzzRequest(identity, 'GET', `/v1/movies?${query}`, headers, undefined),
    );
  await fc.assert(fc.asyncProperty(listRequest, send), { numRuns: 1_000 });
});

test('when such requests arrive over a real socket, with raw dot segments and bytes, then every answer is below 500 in the envelope with a request id', async () => {
  const overTheWire = requestArb({ methods: 3, paths: 2, queries: 3 }).filter(
    // CONNECT turns the connection into a tunnel; a HEAD that the parser refuses is answered
    // with a body (the method is unknown then), which Node's client cannot read; bodies the
    // server refuses before reading them all may reset the connection while the client still
    // writes. app.inject covers all three.
    (request) =>
      request.method !== 'CONNECT' && request.method !== 'HEAD' && (request.body?.length ?? 0) < 65_536,
  );
  await fc.assert(fc.asyncProperty(overTheWire, checked(overSocket)), { numRuns: 500 });
});

test('when the fuzzing is over, then no server error was logged', () => {
  assert.deepEqual(
    lines.filter((line) => line.level === 'error' || line.level === 'fatal'),
    [],
  );
});
