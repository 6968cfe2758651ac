// Pluggable authentication: JWT attacks, revocation on every instance within a second, API
// keys (scopes, revocation, last use), and -auth-methods switching authenticators.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { SignJWT } from 'jose';
import { setRole } from '../src/accounts/accounts.ts';
import { jwtSecretFromDataDir } from '../src/auth/jwt-keys.ts';
import { createJwts } from '../src/auth/registry.ts';
import { buildConfig, readSettings } from '../src/config.ts';
import {
  buildTestApp,
  createTestDatabase,
  createUser,
  resetPassword,
  TEST_JWT_SECRET,
  TEST_PASSWORD,
} from './helpers.ts';

const dsn = await createTestDatabase();
const first = await buildTestApp({ dsn, identityCache: true });
const second = await buildTestApp({ dsn, identityCache: true });
const { db } = first;

function get(app: FastifyInstance, url: string, headers: Record<string, string>) {
  return app.inject({ method: 'GET', url, headers });
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function login(app: FastifyInstance, email: string, password = TEST_PASSWORD): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().access_token;
}

// Polls the second instance until it answers `status` (bounded by a second).
async function expectOnSecondWithinOneSecond(headers: Record<string, string>, status: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    const res = await get(second.app, '/api/v1/products', headers);
    if (res.statusCode === status) return;
    if (performance.now() - started > 1000)
      assert.fail(`still ${res.statusCode} after 1 s, expected ${status}`);
    await sleep(20);
  }
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const secret = new TextEncoder().encode(TEST_JWT_SECRET);

function claims(userId: number, overrides: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: String(userId),
    gen: 0,
    iss: 'greenlight',
    aud: 'greenlight',
    iat: now,
    nbf: now,
    exp: now + 3600,
    ...overrides,
  };
}

function hs256(payload: Record<string, unknown>): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secret);
}

describe('JWT validation', () => {
  test('when a JWT is forged, altered, out of its time window or for someone else, then 401', async () => {
    const user = await createUser(db);
    const other = await createUser(db);
    const good = await hs256(claims(user.id));
    assert.equal((await get(first.app, '/api/v1/products', bearer(good))).statusCode, 200);
    const now = Math.floor(Date.now() / 1000);
    const [header, payload, signature] = good.split('.') as [string, string, string];
    const { privateKey } = generateKeyPairSync('ed25519');
    // The user's id written another way than as a plain decimal number.
    const loose = await Promise.all(
      [`${user.id}.0`, `0x${user.id.toString(16)}`, ` ${user.id}`, `${user.id}e0`, `0${user.id}`].map(
        async (sub): Promise<[string, string, string]> => [
          `subject "${sub}"`,
          await hs256(claims(user.id, { sub })),
          'auth: invalid token',
        ],
      ),
    );
    const cases: Array<[string, string, string]> = [
      ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`, 'auth: invalid token'],
      ['tampered payload', `${header}.${b64(claims(other.id))}.${signature}`, 'auth: invalid token'],
      ['tampered signature', `${header}.${payload}.${signature.slice(0, -2)}AA`, 'auth: invalid token'],
      [
        'another algorithm',
        await new SignJWT(claims(user.id)).setProtectedHeader({ alg: 'EdDSA' }).sign(privateKey),
        'auth: invalid token',
      ],
      [
        'expired',
        await hs256(claims(user.id, { exp: now - 31, iat: now - 100, nbf: now - 100 })),
        'auth: token has expired',
      ],
      ['not yet valid', await hs256(claims(user.id, { nbf: now + 60 })), 'auth: invalid token'],
      ['wrong issuer', await hs256(claims(user.id, { iss: 'go-products-api' })), 'auth: invalid token'],
      ['wrong audience', await hs256(claims(user.id, { aud: 'elsewhere' })), 'auth: invalid token'],
      ['no expiry', await hs256(claims(user.id, { exp: undefined })), 'auth: invalid token'],
      ['no generation', await hs256(claims(user.id, { gen: undefined })), 'auth: invalid token'],
      ['unknown user', await hs256(claims(999_999_999)), 'auth: invalid token'],
      ...loose,
      [
        'other secret',
        await new SignJWT(claims(user.id))
          .setProtectedHeader({ alg: 'HS256' })
          .sign(new TextEncoder().encode('x'.repeat(32))),
        'auth: invalid token',
      ],
    ];
    for (const [what, token, message] of cases) {
      const res = await get(first.app, '/api/v1/products', bearer(token));
      assert.equal(res.statusCode, 401, what);
      assert.deepEqual(res.json(), { code: 401, message }, what);
      const book = await get(first.app, '/v1/movies', bearer(token));
      assert.deepEqual(book.json(), { error: 'invalid or missing authentication token' }, what);
    }
  });

  test('when the clocks differ by less than 30 s, then the JWT is still accepted', async () => {
    const user = await createUser(db);
    const now = Math.floor(Date.now() / 1000);
    const skewed = await hs256(claims(user.id, { nbf: now + 20, iat: now + 20, exp: now - 20 + 3600 }));
    assert.equal((await get(first.app, '/api/v1/products', bearer(skewed))).statusCode, 200);
    const late = await hs256(claims(user.id, { exp: now - 20, iat: now - 100, nbf: now - 100 }));
    assert.equal((await get(first.app, '/api/v1/products', bearer(late))).statusCode, 200);
  });
});

describe('verified JWTs kept by their text', () => {
  test('when a JWT accepted before expires, then it is refused as expired', async () => {
    const user = await createUser(db);
    const now = Math.floor(Date.now() / 1000);
    const almost = await hs256(claims(user.id, { exp: now - 29, iat: now - 100, nbf: now - 100 }));
    assert.equal((await get(first.app, '/api/v1/products', bearer(almost))).statusCode, 200);
    const started = performance.now();
    for (;;) {
      const res = await get(first.app, '/api/v1/products', bearer(almost));
      if (res.statusCode === 401) {
        assert.deepEqual(res.json(), { code: 401, message: 'auth: token has expired' });
        break;
      }
      if (performance.now() - started > 5000) assert.fail('the expired JWT is still accepted');
      await sleep(100);
    }
  });
});

describe('JWT revocation on every instance', () => {
  test('when the password is reset on one instance, then the JWT stops working on the other within 1 s', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    await expectOnSecondWithinOneSecond(bearer(jwt), 200);
    const res = await resetPassword(first.app, db, user.id, 'new-pa55word');
    assert.equal(res.statusCode, 200, res.body);
    await expectOnSecondWithinOneSecond(bearer(jwt), 401);
    // a new login works at once
    await expectOnSecondWithinOneSecond(bearer(await login(first.app, user.email, 'new-pa55word')), 200);
  });

  test('when the user logs out everywhere, then its JWTs and book tokens stop working on the other instance', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    await expectOnSecondWithinOneSecond(bearer(jwt), 200);
    await expectOnSecondWithinOneSecond(bearer(user.token), 200);
    const res = await first.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout-all',
      headers: bearer(jwt),
    });
    assert.equal(res.statusCode, 204, res.body);
    await expectOnSecondWithinOneSecond(bearer(jwt), 401);
    await expectOnSecondWithinOneSecond(bearer(user.token), 401);
  });

  test('when the role changes (users role), then the JWT carrying the old role stops working and a new one has the new role', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    await expectOnSecondWithinOneSecond(bearer(jwt), 200);
    assert.equal((await setRole(db, user.email, 'admin')).role, 'admin');
    await expectOnSecondWithinOneSecond(bearer(jwt), 401);
    const res = await second.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    assert.equal(res.json().user.role, 'admin');
  });
});

describe('API keys and account recovery', () => {
  async function writeKey(user: { email: string }): Promise<{ jwt: string; key: string }> {
    const jwt = await login(first.app, user.email);
    const res = await first.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: bearer(jwt),
      payload: { name: 'ci', scopes: ['products:read', 'products:write'] },
    });
    assert.equal(res.statusCode, 201, res.body);
    return { jwt, key: res.json().key };
  }
  const createProduct = (key: string) =>
    second.app.inject({
      method: 'POST',
      url: '/api/v1/products',
      headers: bearer(key),
      payload: { name: 'written with a key', price: 1 },
    });

  test("when the password is reset, then the user's API keys get 401 on the other instance within 1 s", async () => {
    const user = await createUser(db);
    const { key } = await writeKey(user);
    await expectOnSecondWithinOneSecond(bearer(key), 200);
    const res = await resetPassword(first.app, db, user.id, 'new-pa55word');
    assert.equal(res.statusCode, 200, res.body);
    await expectOnSecondWithinOneSecond(bearer(key), 401);
    assert.equal((await createProduct(key)).statusCode, 401);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM api_keys WHERE user_id = $1', [user.id]);
    assert.deepEqual(rows, [{ n: 0 }]);
  });

  test('when the user logs out everywhere, then its API keys keep working unless revoke_api_keys=true is sent', async () => {
    const user = await createUser(db);
    const { jwt, key } = await writeKey(user);
    await expectOnSecondWithinOneSecond(bearer(key), 200);
    const logoutAll = (token: string, query: string) =>
      first.app.inject({ method: 'POST', url: `/api/v1/auth/logout-all${query}`, headers: bearer(token) });
    assert.equal((await logoutAll(jwt, '')).statusCode, 204);
    await expectOnSecondWithinOneSecond(bearer(jwt), 401);
    assert.equal((await createProduct(key)).statusCode, 201);

    const jwt2 = await login(first.app, user.email);
    for (const query of ['?revoke_api_keys=yes', '?revoke_api_keys=true&revoke_api_keys=true']) {
      const bad = await logoutAll(jwt2, query);
      assert.equal(bad.statusCode, 400, query);
      assert.deepEqual(bad.json(), { code: 400, message: 'invalid revoke_api_keys: must be true or false' });
    }
    assert.equal((await createProduct(key)).statusCode, 201);
    assert.equal((await logoutAll(jwt2, '?revoke_api_keys=true')).statusCode, 204);
    await expectOnSecondWithinOneSecond(bearer(key), 401);
    assert.equal((await createProduct(key)).statusCode, 401);
    const { rows } = await db.query(
      "SELECT details FROM audit_events WHERE action = 'logout.all' AND actor_id = $1 ORDER BY id",
      [user.id],
    );
    assert.deepEqual(
      rows.map((row) => row.details),
      [{}, { api_keys_revoked: 1 }],
    );
  });
});

// A password reset (or a logout everywhere) that commits while a credential is being issued
// from the old one: the test holds that change's transaction open (the new generation written,
// the old sessions and keys deleted) while the request runs, then commits it.
describe('credentials issued while a reset commits', () => {
  async function resetInProgress(userId: number) {
    const client = await db.connect();
    await client.query('BEGIN');
    await client.query('UPDATE users SET token_generation = token_generation + 1 WHERE id = $1', [userId]);
    await client.query("DELETE FROM tokens WHERE user_id = $1 AND scope = 'authentication'", [userId]);
    await client.query('DELETE FROM api_keys WHERE user_id = $1', [userId]);
    return async () => {
      await client.query('COMMIT');
      client.release();
    };
  }

  test('when a login checks the old password while a reset commits, then it gets no token that outlives the reset', async () => {
    const user = await createUser(db);
    const commit = await resetInProgress(user.id);
    const answer = first.app.inject({
      method: 'POST',
      url: '/v1/tokens/authentication',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    // Past the bcrypt check (about 200 ms), then the reset commits.
    await sleep(600);
    await commit();
    const res = await answer;
    assert.equal(res.statusCode, 401, res.body);
    const { rows } = await db.query(
      "SELECT count(*)::int AS n FROM tokens WHERE user_id = $1 AND scope = 'authentication'",
      [user.id],
    );
    assert.deepEqual(rows, [{ n: 0 }]);
  });

  test('when an API key is asked for with the old JWT while a reset commits, then no key outlives the reset', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    const commit = await resetInProgress(user.id);
    const answer = first.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: bearer(jwt),
      payload: { name: 'during the reset', scopes: ['products:read'] },
    });
    await sleep(300);
    await commit();
    const res = await answer;
    assert.equal(res.statusCode, 401, res.body);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM api_keys WHERE user_id = $1', [user.id]);
    assert.deepEqual(rows, [{ n: 0 }]);
  });
});

describe('API keys', () => {
  async function createKey(jwt: string, body: Record<string, unknown>) {
    return first.app.inject({ method: 'POST', url: '/api/v1/api-keys', headers: bearer(jwt), payload: body });
  }

  test('when a key is created, then it is shown once, stored hashed, works both ways and only within its scopes', async () => {
    const user = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
    const jwt = await login(first.app, user.email);
    const res = await createKey(jwt, { name: 'ci', scopes: ['products:read', 'movies:read'] });
    assert.equal(res.statusCode, 201, res.body);
    const created = res.json();
    assert.match(created.key, /^glk_[A-Za-z0-9_-]{32}$/);
    assert.equal(created.prefix, created.key.slice(0, 12));
    assert.deepEqual(created.scopes, ['products:read', 'movies:read']);
    assert.equal(created.expires_at, null);
    const { rows } = await db.query("SELECT encode(hash, 'hex') AS hash FROM api_keys WHERE id = $1", [
      created.id,
    ]);
    assert.equal(rows[0].hash.length, 64);
    assert.notEqual(rows[0].hash, Buffer.from(created.key).toString('hex'));

    assert.equal((await get(first.app, '/api/v1/products', bearer(created.key))).statusCode, 200);
    assert.equal((await get(first.app, '/api/v1/products', { 'x-api-key': created.key })).statusCode, 200);
    assert.equal((await get(first.app, '/v1/movies', { 'x-api-key': created.key })).statusCode, 200);
    // outside its scopes: the seed's 403 here, the book's 403 there
    const post = await first.app.inject({
      method: 'POST',
      url: '/api/v1/products',
      headers: { 'x-api-key': created.key },
      payload: { name: 'x', price: 1 },
    });
    assert.deepEqual(post.json(), {
      code: 403,
      message: 'you do not have permission to perform this action',
    });
    const movie = await first.app.inject({
      method: 'POST',
      url: '/v1/movies',
      headers: bearer(created.key),
      payload: { title: 'x', year: 2000, runtime: '90 mins', genres: ['a'] },
    });
    assert.equal(movie.statusCode, 403);
    // a key cannot make keys or end sessions
    const nested = await first.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: bearer(created.key),
      payload: { name: 'x', scopes: ['products:write'] },
    });
    assert.deepEqual(nested.json(), {
      code: 403,
      message: 'you do not have permission to perform this action',
    });

    // last_used_at is written behind the request, once a minute at most
    const started = performance.now();
    const lastUsed = async () =>
      (await db.query('SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])).rows[0].last_used_at;
    while ((await lastUsed()) === null) {
      if (performance.now() - started > 1000) assert.fail('last_used_at not written within 1 s');
      await sleep(20);
    }
    const firstUse = await lastUsed();
    await get(first.app, '/api/v1/products', bearer(created.key));
    assert.deepEqual(await lastUsed(), firstUse);

    const list = await first.app.inject({ method: 'GET', url: '/api/v1/api-keys', headers: bearer(jwt) });
    assert.equal(list.statusCode, 200);
    assert.equal(list.json().data.length, 1);
    assert.equal('key' in list.json().data[0], false);
    assert.equal(list.json().data[0].last_used_at, firstUse.toISOString());
  });

  test('when a key is revoked on one instance, then the other refuses it within 1 s', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    const key = (await createKey(jwt, { name: 'k', scopes: ['products:read'] })).json();
    await expectOnSecondWithinOneSecond({ 'x-api-key': key.key }, 200);
    const res = await first.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${key.id}`,
      headers: bearer(jwt),
    });
    assert.equal(res.statusCode, 204);
    await expectOnSecondWithinOneSecond({ 'x-api-key': key.key }, 401);
    const again = await first.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${key.id}`,
      headers: bearer(jwt),
    });
    assert.deepEqual(again.json(), {
      code: 404,
      message: `not_found: api key with id ${key.id} does not exist`,
    });
    const bad = await first.app.inject({ method: 'DELETE', url: '/api/v1/api-keys/x', headers: bearer(jwt) });
    assert.deepEqual(bad.json(), { code: 400, message: 'invalid api key id' });
  });

  test("when another user's key id is deleted, then 404 and the key still works", async () => {
    const owner = await createUser(db);
    const key = (
      await createKey(await login(first.app, owner.email), { name: 'k', scopes: ['products:read'] })
    ).json();
    const other = await login(first.app, (await createUser(db)).email);
    const res = await first.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${key.id}`,
      headers: bearer(other),
    });
    assert.equal(res.statusCode, 404);
    assert.equal((await get(first.app, '/api/v1/products', { 'x-api-key': key.key })).statusCode, 200);
  });

  test('when a key has expired or its request breaks a rule, then 401 or 422', async () => {
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    const key = (
      await createKey(jwt, {
        name: 'k',
        scopes: ['products:read'],
        expires_at: new Date(Date.now() + 60_000).toISOString(),
      })
    ).json();
    await db.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [key.id]);
    const expired = await get(first.app, '/api/v1/products', { 'x-api-key': key.key });
    assert.deepEqual(expired.json(), { code: 401, message: 'auth: invalid token' });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ scopes: ['products:read'] }, 'validation: api key name must be 1 to 200 characters long'],
      [
        { name: 'k', scopes: [] },
        'validation: scopes must be a non-empty list of: products:read, products:write, orders:read, orders:write, movies:read, movies:write, metrics:view',
      ],
      [
        { name: 'k', scopes: ['root'] },
        'validation: scopes must be a non-empty list of: products:read, products:write, orders:read, orders:write, movies:read, movies:write, metrics:view',
      ],
      [
        { name: 'k', scopes: ['products:read'], expires_at: '2001-01-01T00:00:00Z' },
        'validation: expires_at must be an RFC 3339 time in the future',
      ],
      [
        { name: 'k', scopes: ['products:read'], expires_at: 'tomorrow' },
        'validation: expires_at must be an RFC 3339 time in the future',
      ],
      [
        { name: 'k', scopes: ['products:read'], expires_at: '2099-02-30T00:00:00Z' },
        'validation: expires_at must be an RFC 3339 time in the future',
      ],
      [
        { name: 'k', scopes: ['products:read'], expires_at: '2100-02-29T00:00:00Z' },
        'validation: expires_at must be an RFC 3339 time in the future',
      ],
      [{ name: 'a\u0000', scopes: ['products:read'] }, 'validation: name must not contain a NUL character'],
    ];
    for (const [body, message] of cases) {
      const res = await createKey(jwt, body);
      assert.deepEqual(res.json(), { code: 422, message }, JSON.stringify(body));
    }
    const forged = await get(first.app, '/api/v1/products', { 'x-api-key': `glk_${'A'.repeat(32)}` });
    assert.deepEqual(forged.json(), { code: 401, message: 'auth: invalid token' });
  });
});

describe('-auth-methods', () => {
  test('when only jwt is enabled, then book tokens and API keys are refused on both APIs', async () => {
    const only = await buildTestApp({ dsn, flags: ['-auth-methods', 'jwt'] });
    const user = await createUser(db);
    const jwt = await login(only.app, user.email);
    assert.equal((await get(only.app, '/api/v1/products', bearer(jwt))).statusCode, 200);
    assert.equal((await get(only.app, '/api/v1/products', bearer(user.token))).statusCode, 401);
    assert.equal((await get(only.app, '/v1/healthcheck', bearer(user.token))).statusCode, 401);
  });

  test('when jwt is not enabled, then JWTs are refused but book tokens work', async () => {
    const noJwt = await buildTestApp({ dsn, flags: ['-auth-methods', 'token,apikey'] });
    const user = await createUser(db);
    const jwt = await login(first.app, user.email);
    assert.equal((await get(noJwt.app, '/api/v1/products', bearer(jwt))).statusCode, 401);
    assert.equal((await get(noJwt.app, '/api/v1/products', bearer(user.token))).statusCode, 200);
  });

  test('when the configuration is wrong, then it names the flag', () => {
    const build = (argv: string[]) => () => buildConfig(readSettings(argv, {}));
    assert.throws(
      build(['-auth-methods', 'token,magic']),
      /invalid -auth-methods \(GREENLIGHT_AUTH_METHODS\): "magic" is not one of token, jwt, apikey/,
    );
    assert.throws(
      build(['-env', 'production', '-smtp-host', 'x']),
      /invalid -jwt-secret \(GREENLIGHT_JWT_SECRET\): is required when -env is production/,
    );
    assert.throws(build(['-jwt-secret', 'short']), /must be at least 32 bytes/);
    assert.doesNotThrow(build(['-env', 'production', '-auth-methods', 'token']));
    // without jwt among the methods no secret is needed to build the app either
    assert.doesNotThrow(() => createJwts(build(['-env', 'production', '-auth-methods', 'token'])()));
    assert.throws(() => createJwts(build(['-auth-methods', 'jwt'])()), /secret must be resolved/);
  });

  test('when no secret is configured, then one is generated once into the data directory with mode 0600', () => {
    const dir = mkdtempSync(join(tmpdir(), 'greenlight-jwt-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'data');
    const secretValue = jwtSecretFromDataDir(dataDir);
    assert.ok(existsSync(join(dataDir, 'jwt-secret')));
    assert.equal(statSync(join(dataDir, 'jwt-secret')).mode & 0o777, 0o600);
    assert.ok(Buffer.byteLength(secretValue) >= 32);
    assert.equal(jwtSecretFromDataDir(dataDir), secretValue);
    assert.equal(readFileSync(join(dataDir, 'jwt-secret'), 'utf8'), secretValue);
  });
});
