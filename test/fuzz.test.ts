// Generated malformed requests on every route of both APIs, as an attacker sends them: odd
// methods, paths that cannot name a resource, queries with NUL and huge numbers, garbage
// headers, bodies from random bytes to valid JSON of every wrong type, and forged credentials
// of every kind the service accepts. Whatever arrives, the answer is below 500, in the JSON
// envelope of the API the path belongs to, with a request id, and nothing is logged as a
// server error.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { request as httpRequest, METHODS } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { identityForUser, setRole } from '../src/accounts/accounts.ts';
import { insertToken } from '../src/accounts/tokens.sql.ts';
import { generateToken, SCOPES } from '../src/accounts/tokens.ts';
import { API_KEY_PREFIX, API_KEY_SCOPES } from '../src/auth/apikey.ts';
import { createJwts } from '../src/auth/registry.ts';
import { CLIENT_ERROR_MESSAGES } from '../src/platform/http-server.ts';
import { MAX_BODY_BYTES } from '../src/platform/json-body.ts';
import { buildTestApp, createMovie, createUser, TEST_PASSWORD, withToken } from './helpers.ts';

const TRUSTED_ORIGIN = 'https://trusted.example';
const { app, config, db, lines } = await buildTestApp({ flags: ['-cors-trusted-origins', TRUSTED_ORIGIN] });
// Also listening, for requests whose raw bytes app.inject would normalise (dot segments,
// unencoded characters).
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as AddressInfo;

async function expectStatus(options: InjectOptions, status: number) {
  const res = await app.inject(options);
  assert.equal(res.statusCode, status, `setup ${options.method} ${options.url}: ${res.body}`);
  return res.json() as Record<string, unknown>;
}
const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

// The credentials the generated requests are sent with. A generated request may end them
// (log out everywhere, revoke a key): they are made again after every 204.
const bookUser = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
// One registration through the API itself (bcrypt at cost 12, once); its JWT owns the products.
const registered = await expectStatus(
  {
    method: 'POST',
    url: '/api/v1/auth/register',
    payload: { email: 'fuzz-owner@example.com', password: 'fuzz-pa55word' },
  },
  201,
);
const ownerId = (registered.user as { id: number }).id;
// An admin for the audit trail: made directly (bcrypt at cost 4), logged in through the API.
const adminUser = await createUser(db);
await setRole(db, adminUser.email, 'admin');
const adminLogin = await expectStatus(
  { method: 'POST', url: '/api/v1/auth/login', payload: { email: adminUser.email, password: TEST_PASSWORD } },
  200,
);
const createApiKey = async (jwt: string) =>
  (
    await expectStatus(
      {
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: bearer(jwt),
        payload: { name: 'fuzz', scopes: [...API_KEY_SCOPES] },
      },
      201,
    )
  ).key as string;
const credentials = {
  book: bookUser.token,
  jwt: registered.access_token as string,
  admin: adminLogin.access_token as string,
  apiKey: await createApiKey(registered.access_token as string),
};
const FIRST_CREDENTIALS = { ...credentials };

// The app's own issuer, so that a JWT ended by a generated request is replaced without
// another bcrypt round.
const jwts = createJwts(config);
const issueJwt = async (userId: number) =>
  jwts.issue(await identityForUser(db, userId, undefined, new Date()));
async function renewCredentials(): Promise<void> {
  const book = generateToken(bookUser.id, SCOPES.authentication);
  await insertToken(db, book);
  credentials.book = book.plaintext;
  credentials.jwt = await issueJwt(ownerId);
  credentials.admin = await issueJwt(adminUser.id);
  credentials.apiKey = await createApiKey(credentials.jwt);
}

// Movies and products for the item routes to find, update and delete: most generated ids
// are small.
const api = withToken(app, bookUser.token);
for (let i = 0; i < 50; i++) {
  await createMovie(api);
  await expectStatus(
    {
      method: 'POST',
      url: '/api/v1/products',
      headers: bearer(credentials.jwt),
      payload: { name: `Product ${i}`, description: 'fuzzed', price: 9.99, stock: i },
    },
    201,
  );
}

// A route and the fields its body has (none: it reads no body).
type Route = Readonly<{ method: string; path: string; fields: readonly string[] }>;

const MOVIE_FIELDS = ['title', 'year', 'runtime', 'genres'];
const PRODUCT_FIELDS = ['name', 'description', 'price', 'stock'];
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
  { method: 'POST', path: '/api/v1/auth/register', fields: ['email', 'password'] },
  { method: 'POST', path: '/api/v1/auth/login', fields: ['email', 'password'] },
  { method: 'POST', path: '/api/v1/auth/logout-all', fields: [] },
  { method: 'POST', path: '/api/v1/api-keys', fields: ['name', 'scopes', 'expires_at'] },
  { method: 'GET', path: '/api/v1/api-keys', fields: [] },
  { method: 'DELETE', path: '/api/v1/api-keys/:id', fields: [] },
  { method: 'GET', path: '/api/v1/products', fields: [] },
  { method: 'POST', path: '/api/v1/products', fields: PRODUCT_FIELDS },
  { method: 'GET', path: '/api/v1/products/:id', fields: [] },
  { method: 'PATCH', path: '/api/v1/products/:id', fields: PRODUCT_FIELDS },
  { method: 'DELETE', path: '/api/v1/products/:id', fields: [] },
  { method: 'GET', path: '/api/v1/admin/audit', fields: [] },
];
const API_ROUTES = ROUTES.filter((route) => route.path.startsWith('/api/v1/'));
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
  'description',
  'price',
  'stock',
  'scopes',
  'expires_at',
  'user_id',
  'role',
  'PRICE',
  'Stock',
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
  (p) => p.replace('/api/v1/', '/v1/'),
  (p) => p.replace(/^\/v1\//, '/api/v1/'),
  (p) => p.replace('/api/', '/API/'),
  (p) => p.replace('/api/v1/', '/api/v1/../v1/'),
];

const ITEM_PATHS = ROUTES.filter((r) => r.path.endsWith('/:id')).map((r) => r.path.replace(':id', ''));
const itemPath = fc.tuple(fc.constantFrom(...new Set(ITEM_PATHS)), idArb).map(([path, id]) => path + id);
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

const QUERY_KEYS = ['title', 'genres', 'page', 'page_size', 'sort', 'limit', 'before'];
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
    '9223372036854775807',
    '9223372036854775808',
    '-9223372036854775809',
    '00000000000000000001',
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

// --- credentials ---------------------------------------------------------------------------

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const base64url = (minLength: number, maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...BASE64URL), minLength, maxLength });
const encodePart = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

// JWTs with every part well-formed but one claim or header wrong: signed with the real
// secret (they pass the signature and fail later), unsigned, or signed with another key.
const now = Math.floor(Date.now() / 1000);
const { jwtIssuer: iss, jwtAudience: aud } = config.auth;
const ownerGeneration = (await identityForUser(db, ownerId, undefined, new Date())).tokenGeneration;
const claims = { sub: String(ownerId), gen: ownerGeneration, iss, aud, iat: now, nbf: now, exp: now + 3_600 };
const hmacJwt = (
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key = config.auth.jwtSecret,
) => {
  const signingInput = `${encodePart(header)}.${encodePart(payload)}`;
  const hash = header.alg === 'HS512' ? 'sha512' : 'sha256';
  return `${signingInput}.${createHmac(hash, key).update(signingInput).digest('base64url')}`;
};
const HS256 = { alg: 'HS256', typ: 'JWT' };
const { sub: _sub, ...withoutSub } = claims;
const { gen: _gen, ...withoutGen } = claims;
const { exp: _exp, ...withoutExp } = claims;
const FORGED_JWTS = [
  ...[
    { sub: '0' },
    { sub: '-1' },
    { sub: '9223372036854775808' },
    { sub: 'abc' },
    { sub: '1e3' },
    { sub: String(ownerId + 1_000_000) },
    { sub: ownerId },
    { gen: ownerGeneration + 1 },
    { gen: 'x' },
    { gen: 1.5 },
    { gen: 1e300 },
    { exp: now - 3_600 },
    { exp: 'soon' },
    { exp: 1e300 },
    { nbf: now + 3_600 },
    { iat: now + 3_600 },
    { iss: 'evil' },
    { aud: ['evil', aud] },
    { role: 'admin' },
    { user_id: adminUser.id },
  ].map((override) => hmacJwt(HS256, { ...claims, ...override })),
  ...[withoutSub, withoutGen, withoutExp].map((payload) => hmacJwt(HS256, payload)),
  hmacJwt({ alg: 'HS512', typ: 'JWT' }, claims),
  hmacJwt({ ...HS256, kid: '../../../../etc/passwd' }, claims),
  hmacJwt({ ...HS256, crit: ['exp'] }, claims),
  hmacJwt({ ...HS256, b64: false, crit: ['b64'] }, claims),
  hmacJwt({ ...HS256, jku: 'http://127.0.0.1:1/jwks.json' }, claims),
  hmacJwt(HS256, claims, 'another-secret-of-thirty-two-bytes'),
  hmacJwt({ alg: 'HS256', typ: 'JWT', pad: 'x'.repeat(3_000) }, claims),
  `${encodePart({ alg: 'none', typ: 'JWT' })}.${encodePart(claims)}.`,
  `${encodePart({ alg: 'none', typ: 'JWT' })}.${encodePart(claims)}`,
  `${encodePart({ alg: 'None' })}.${encodePart(claims)}.${encodePart('x')}`,
  `${encodePart({ alg: 'RS256', typ: 'JWT' })}.${encodePart(claims)}.${encodePart('sig')}`,
  `${encodePart('not an object')}.${encodePart(claims)}.x`,
  `${encodePart({ alg: 'HS256' })}.${Buffer.from('not json').toString('base64url')}.x`,
  `${encodePart({ alg: 'HS256' })}.${encodePart([1, 2])}.x`,
  // the real token, altered
  `${FIRST_CREDENTIALS.jwt.slice(0, -1)}${FIRST_CREDENTIALS.jwt.endsWith('A') ? 'B' : 'A'}`,
  FIRST_CREDENTIALS.jwt.slice(0, -10),
  `${FIRST_CREDENTIALS.jwt}.`,
  `${FIRST_CREDENTIALS.jwt}==`,
  FIRST_CREDENTIALS.jwt.replaceAll('.', '..'),
];
const jwtGarbage = fc.oneof(
  fc.constantFrom(...FORGED_JWTS),
  base64url(0, 80).map((text) => `eyJ${text}`),
  headerText(60).map((text) => `eyJ${text}`),
  fc.tuple(base64url(0, 40), base64url(0, 120), base64url(0, 60)).map((parts) => parts.join('.')),
  fc
    .tuple(base64url(0, 40), base64url(0, 120), base64url(0, 60))
    .map(([header, payload, signature]) => `eyJ${header}.eyJ${payload}.${signature}`),
  fc
    .json()
    .map((payload) => `${encodePart({ alg: 'HS256' })}.${Buffer.from(payload).toString('base64url')}.`),
);
const API_KEY_BODY = 32;
const apiKeyGarbage = fc.oneof(
  base64url(API_KEY_BODY, API_KEY_BODY).map((text) => API_KEY_PREFIX + text),
  base64url(0, 64).map((text) => API_KEY_PREFIX + text),
  headerText(40).map((text) => API_KEY_PREFIX + text),
  base64url(API_KEY_BODY, API_KEY_BODY).map((text) => `GLK_${text}`),
  fc.constantFrom(
    API_KEY_PREFIX,
    `${FIRST_CREDENTIALS.apiKey.slice(0, -1)}${FIRST_CREDENTIALS.apiKey.endsWith('A') ? 'B' : 'A'}`,
    FIRST_CREDENTIALS.apiKey.slice(0, -1),
    `${FIRST_CREDENTIALS.apiKey}A`,
    FIRST_CREDENTIALS.apiKey.toUpperCase(),
    `${API_KEY_PREFIX}${'é'.repeat(API_KEY_BODY)}`,
  ),
);
const anyCaseBearer = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'BeArEr', 'Bearer ', 'Bearer\t');
const hostileCredential = fc.oneof(jwtGarbage, apiKeyGarbage, base32, headerText(60));

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
      { weight: 6, arbitrary: fc.tuple(anyCaseBearer, hostileCredential).map(([s, c]) => `${s} ${c}`) },
    ),
    2,
  ),
  'x-api-key': sometimes(fc.oneof(apiKeyGarbage, jwtGarbage, base32, headerText(80)), 5),
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
    'x'.repeat(3_000),
    'é'.repeat(1_500),
    'products:read',
    'products:write',
    'PRODUCTS:READ',
    'admin',
    '2099-01-01T00:00:00Z',
    '2020-01-01T00:00:00Z',
    '9999-12-31T23:59:59Z',
    '+275760-09-13T00:00:00Z',
    '2099-02-30T00:00:00Z',
    '2099-01-01T00:00:00.1234567890123Z',
    '2099-01-01T00:00:00+99:99',
    '2099-01-01 00:00:00Z',
    '2099-01-01T00:00:00\u0000Z',
    '149.99',
    'glk_',
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
    '1e400',
    '-1e400',
    '-1e-400',
    '100000000000000000000000000000',
    '9223372036854775807',
    '-9223372036854775809',
    '-1',
    '-0.0',
    '0.001',
    '1.005',
    '149.999',
    '0.1',
    '1.10',
    '12.345678901234567890123456789',
    '99999999.99',
    '99999999.995',
    '100000000',
    '1e-7',
    '5e-324',
    '1.7976931348623157e308',
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
  .array(fc.oneof(fc.constantFrom('drama', 'comedy', 'sci-fi', ...API_KEY_SCOPES), textValue), {
    maxLength: 7,
  })
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
  description: fc.string({ unit: 'grapheme', maxLength: 40 }).map(json),
  price: fc.integer({ min: 0, max: 9_999_999_999 }).map((cents) => (cents / 100).toFixed(2)),
  stock: fc.integer({ min: 0, max: 2_147_483_647 }).map(String),
  scopes: fc.subarray([...API_KEY_SCOPES], { minLength: 1 }).map(json),
  expires_at: fc
    .date({ min: new Date(Date.now() + 86_400_000), max: new Date('9999-12-31'), noInvalidDate: true })
    .map((date) => json(date.toISOString())),
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

// Bytes that are not UTF-8 (lone surrogates encoded as such, overlong forms) inside strings.
const RAW_BODIES = [
  '{"name":"\xED\xA0\x80","price":1,"stock":1}',
  '{"email":"a\xED\xB0\x80@example.com","password":"pa55word"}',
  '{"name":"\xC0\x80","scopes":["products:read"]}',
  '{"description":"\xFF\xFE","name":"x"}',
  '{"scopes":["\xED\xA0\x80"],"name":"k"}',
].map((text) => Buffer.from(text, 'latin1'));

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
    { weight: 2, arbitrary: fc.constantFrom(...RAW_BODIES) },
  );
};

const BODIES = new Map(ROUTES.map((route) => [route, bodyArbitrary(route.fields)]));

// --- requests ------------------------------------------------------------------------------

// Who sends it: the book's token (`user`), the registered user's JWT, the admin's JWT, the
// API key as a bearer token or in X-API-Key, or nobody (any garbage credential goes then).
const IDENTITIES = ['user', 'jwt', 'admin', 'apikey', 'x-api-key', 'anonymous'] as const;
type Identity = (typeof IDENTITIES)[number];

type FuzzRequest = Readonly<{
  identity: Identity;
  // the scheme a valid credential is sent with
  scheme: string;
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
  return `${request.identity} (${request.scheme}) ${request.method} ${preview(request.url, 500)} headers=${JSON.stringify(request.headers)} body=${body}`;
}

function fuzzRequest(
  identity: Identity,
  scheme: string,
  method: string,
  url: string,
  headers: Readonly<Record<string, string | null>>,
  body: FuzzRequest['body'],
): FuzzRequest {
  const { authorization, ...rest } = headers;
  const sent: Record<string, string> = {};
  for (const [name, value] of Object.entries(rest)) if (value !== null) sent[name] = value;
  // A garbage Authorization is only sent anonymously; a valid identity sends its own.
  if (identity === 'anonymous' && typeof authorization === 'string') sent.authorization = authorization;
  const request: FuzzRequest = { identity, scheme, method, url, headers: sent, body };
  return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request) });
}

const methodArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') },
  { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
);

const identityArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<Identity>('user', 'jwt', 'anonymous') },
  { weight: 1, arbitrary: fc.constantFrom<Identity>(...IDENTITIES) },
);
// Mostly the exact scheme, which both APIs take; the products API takes any letter case.
const schemeArb = fc.oneof({ weight: 6, arbitrary: fc.constant('Bearer') }, anyCaseBearer);

const requestArb = (options: {
  methods: number;
  paths: number;
  queries: number;
  routes?: readonly Route[];
}) =>
  fc.constantFrom(...(options.routes ?? ROUTES)).chain((route) =>
    fc
      .record({
        identity: identityArb,
        scheme: schemeArb,
        method: sometimes(methodArb, options.methods),
        path: sometimes(pathArb, options.paths),
        id: idArb,
        query: sometimes(queryArb, options.queries),
        headers: headersArb,
        body: BODIES.get(route) ?? fc.constant(undefined),
      })
      .map(({ identity, scheme, method, path, id, query, headers, body }) =>
        fuzzRequest(
          identity,
          scheme,
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
// The products API's success bodies, by their keys (its TypeBox response schemas).
const PRODUCT_KEYS = ['created_at', 'id', 'name', 'price', 'stock', 'updated_at', 'user_id'];
const API_KEY_KEYS = ['created_at', 'expires_at', 'id', 'last_used_at', 'name', 'prefix', 'scopes'];
const API_SUCCESS_ENVELOPES = [
  ['access_token', 'token_type', 'user'],
  [...API_KEY_KEYS, 'key'],
  ['data'],
  ['data', 'limit', 'page', 'total'],
  ['data', 'next_before'],
  PRODUCT_KEYS,
  [...PRODUCT_KEYS, 'description'],
].map((keys) => keys.sort().join());

// Paths the products API answers, with its own envelope: as the server reads them, which
// for app.inject is after URL parsing has removed dot segments.
type Transport = 'inject' | 'socket';
function isProductsApi(url: string, transport: Transport): boolean {
  let path = url;
  if (transport === 'inject') {
    try {
      path = new URL(url, 'http://localhost').pathname;
    } catch {}
  }
  return /^\/api\/v1(\/|$|\?)/.test(path);
}
// What Node's HTTP parser refuses was never read as far as a path: the book's envelope.
const PARSER_ERRORS = new Set(Object.values(CLIENT_ERROR_MESSAGES));
const isParserAnswer = (object: Record<string, unknown>) =>
  typeof object.error === 'string' && PARSER_ERRORS.has(object.error);

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

function assertBookError(res: Answer, object: Record<string, unknown>, answer: string): void {
  assert.deepEqual(Object.keys(object), ['error'], `error envelope: ${answer}`);
  const error = object.error;
  const fieldErrors =
    res.statusCode === 422 &&
    typeof error === 'object' &&
    error !== null &&
    Object.keys(error).length > 0 &&
    Object.values(error).every((message) => typeof message === 'string' && message !== '');
  assert.ok((typeof error === 'string' && error !== '') || fieldErrors, `error envelope: ${answer}`);
}

function assertApiError(res: Answer, object: Record<string, unknown>, answer: string): void {
  assert.deepEqual(Object.keys(object).sort(), ['code', 'message'], `products API error envelope: ${answer}`);
  assert.ok(
    Number.isInteger(object.code) && object.code === res.statusCode,
    `products API error code: ${answer}`,
  );
  assert.ok(
    typeof object.message === 'string' && object.message !== '',
    `products API error message: ${answer}`,
  );
}

function assertEnvelope(request: FuzzRequest, res: Answer, transport: Transport): void {
  const text = decoded(res);
  const answer = `${res.statusCode} ${JSON.stringify(res.headers)} ${preview(text, 1_000)}`;
  assert.ok(res.statusCode >= 200 && res.statusCode < 500, `status: ${answer}`);
  const id = res.headers['x-request-id'];
  assert.ok(typeof id === 'string' && SANE_REQUEST_ID.test(id), `request id: ${answer}`);
  if (request.method === 'HEAD') {
    assert.equal(text, '', `HEAD with a body: ${answer}`);
    return;
  }
  if (res.statusCode === 204) {
    assert.equal(text, '', `204 with a body: ${answer}`);
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
  const productsApi = isProductsApi(request.url, transport) && !isParserAnswer(object);
  if (res.statusCode >= 400) {
    if (productsApi) assertApiError(res, object, answer);
    else assertBookError(res, object, answer);
  } else if (productsApi) {
    assert.ok(
      API_SUCCESS_ENVELOPES.includes(Object.keys(object).sort().join()),
      `products API success body: ${answer}`,
    );
  } else {
    assert.ok(isSuccessEnvelope(object), `success envelope: ${answer}`);
  }
}

// The identity's credential as it is at the time of sending (renewed after a 204).
function credentialHeaders(request: FuzzRequest): Record<string, string> {
  const as = (credential: string) => ({ authorization: `${request.scheme} ${credential}` });
  switch (request.identity) {
    case 'user':
      return as(credentials.book);
    case 'jwt':
      return as(credentials.jwt);
    case 'admin':
      return as(credentials.admin);
    case 'apikey':
      return as(credentials.apiKey);
    case 'x-api-key':
      return { 'x-api-key': credentials.apiKey };
    case 'anonymous':
      return {};
  }
}

// The request as a client writes it on a new connection: the path as given, except for the
// characters Node's client refuses to send unencoded.
function overSocket(request: FuzzRequest): Promise<Answer> {
  const headers: Record<string, string> = {
    ...request.headers,
    ...credentialHeaders(request),
    connection: 'close',
  };
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
  app.inject({
    method: request.method as InjectOptions['method'],
    url: request.url,
    headers: { ...request.headers, ...credentialHeaders(request) },
    ...(request.body === undefined ? {} : { payload: request.body }),
  });

const checked = (transport: Transport) => async (request: FuzzRequest) => {
  const logged = lines.length;
  const res = await (transport === 'inject' ? injected(request) : overSocket(request));
  // A log out everywhere, a revoked key or a deleted product: whichever, the credentials
  // stay valid for the requests that follow.
  if (res.statusCode === 204) await renewCredentials();
  assertEnvelope(request, res, transport);
  const errors = lines.slice(logged).filter((line) => line.level === 'error' || line.level === 'fatal');
  assert.deepEqual(errors, [], `logged as a server error: ${res.statusCode} ${preview(decoded(res))}`);
};
const send = checked('inject');

test('when any method, path, query, header and body is sent to any route, then every answer is below 500 in the JSON envelope with a request id', async () => {
  await fc.assert(fc.asyncProperty(requestArb({ methods: 3, paths: 2, queries: 3 }), send), {
    numRuns: 2_000,
  });
});

test('when each route gets its own method and path with malformed bodies and headers, then every answer is below 500 in the envelope with a request id', async () => {
  await fc.assert(fc.asyncProperty(requestArb({ methods: 20, paths: 20, queries: 10 }), send), {
    numRuns: 2_000,
  });
});

test('when the /api/v1 routes get hostile bodies and forged credentials, then every answer is below 500 in the {code, message} envelope with a request id', async () => {
  const apiRequest = requestArb({ methods: 20, paths: 20, queries: 5, routes: API_ROUTES });
  await fc.assert(fc.asyncProperty(apiRequest, send), { numRuns: 1_500 });
});

test('when the movie, product and audit lists are queried with malformed filters, then every answer is below 500 in the envelope with a request id', async () => {
  const listRequest = fc
    // mostly with a credential: an anonymous list request is refused before its query is read
    .record({
      identity: fc.constantFrom<Identity>('user', 'jwt', 'admin', 'apikey', 'anonymous'),
      path: fc.constantFrom('/v1/movies', '/api/v1/products', '/api/v1/admin/audit'),
      query: queryArb,
      headers: headersArb,
    })
    .map(({ identity, path, query, headers }) =>
      fuzzRequest(identity, 'Bearer', 'GET', `${path}?${query}`, headers, undefined),
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
  await fc.assert(fc.asyncProperty(overTheWire, checked('socket')), { numRuns: 600 });
});

test('when the fuzzing is over, then no server error was logged', () => {
  assert.deepEqual(
    lines.filter((line) => line.level === 'error' || line.level === 'fatal'),
    [],
  );
});
