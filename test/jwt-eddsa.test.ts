// EdDSA JWTs: key ids, the JWKS, algorithm confusion, rotation with old keys verifying until
// their tokens can have expired.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { rotateKeys } from '../src/auth/jwt-keys.ts';
import { buildTestApp, createTestDatabase, createUser, TEST_PASSWORD } from './helpers.ts';

const keyDir = mkdtempSync(join(tmpdir(), 'greenlight-jwt-keys-'));
after(() => rmSync(keyDir, { recursive: true, force: true }));
const flags = ['-jwt-alg', 'EdDSA', '-jwt-key-dir', keyDir];
const dsn = await createTestDatabase();
const first = await buildTestApp({ dsn, flags });

async function login(app: FastifyInstance, email: string): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password: TEST_PASSWORD },
  });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().access_token;
}

const products = (app: FastifyInstance, token: string) =>
  app.inject({ method: 'GET', url: '/api/v1/products', headers: { authorization: `Bearer ${token}` } });

async function jwks(app: FastifyInstance) {
  const res = await app.inject('/.well-known/jwks.json');
  assert.equal(res.statusCode, 200);
  return res.json() as { keys: Array<{ kid: string; x: string; kty: string; crv: string; alg: string }> };
}

describe('EdDSA JWTs', () => {
  test('when a user logs in, then the JWT is EdDSA with a kid that the JWKS publishes and verifies', async () => {
    const user = await createUser(first.db);
    const jwt = await login(first.app, user.email);
    const header = decodeProtectedHeader(jwt);
    assert.equal(header.alg, 'EdDSA');
    const set = await jwks(first.app);
    assert.deepEqual(
      set.keys.map((k) => k.kid),
      [header.kid],
    );
    assert.deepEqual([set.keys[0]?.kty, set.keys[0]?.crv, set.keys[0]?.alg], ['OKP', 'Ed25519', 'EdDSA']);
    assert.equal('d' in (set.keys[0] as object), false, 'no private part');
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(set), {
      issuer: 'greenlight',
      audience: 'greenlight',
    });
    assert.equal(payload.sub, String(user.id));
    assert.equal((await products(first.app, jwt)).statusCode, 200);
  });

  test('when a token is HS256-signed with the public key, then 401', async () => {
    const user = await createUser(first.db);
    const [key] = (await jwks(first.app)).keys;
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: String(user.id),
      gen: 0,
      iss: 'greenlight',
      aud: 'greenlight',
      iat: now,
      nbf: now,
      exp: now + 600,
    };
    for (const secret of [
      Buffer.from(key?.x as string, 'base64url'),
      Buffer.from(JSON.stringify(key)),
      Buffer.from(key?.x as string),
    ]) {
      const forged = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: key?.kid })
        .sign(secret);
      const res = await products(first.app, forged);
      assert.deepEqual(res.json(), { code: 401, message: 'auth: invalid token' });
    }
  });

  test('when the keys rotate, then new tokens use the new key, old tokens verify until their key expires, and expired keys are removed', async () => {
    const user = await createUser(first.db);
    const oldJwt = await login(first.app, user.email);
    const oldKid = decodeProtectedHeader(oldJwt).kid as string;
    const { kid: newKid, removed } = rotateKeys(keyDir, 24 * 3_600_000);
    assert.deepEqual(removed, []);
    // a new instance signs with the new key; the running one learns it on first sight
    const second = await buildTestApp({ dsn, flags });
    const newJwt = await login(second.app, user.email);
    assert.equal(decodeProtectedHeader(newJwt).kid, newKid);
    assert.equal((await products(second.app, oldJwt)).statusCode, 200);
    const started = performance.now();
    while ((await products(first.app, newJwt)).statusCode !== 200) {
      if (performance.now() - started > 2000) assert.fail('the running instance did not learn the new key');
      await sleep(50);
    }
    assert.deepEqual((await jwks(second.app)).keys.map((k) => k.kid).sort(), [oldKid, newKid].sort());

    // Once the new key is older than a token's lifetime (+ skew), the old key verifies nothing.
    const backdate = (kid: string, hours: number) => {
      const file = join(keyDir, `${kid}.json`);
      const stored = JSON.parse(readFileSync(file, 'utf8'));
      const createdAt = new Date(Date.now() - hours * 3_600_000).toISOString();
      writeFileSync(file, JSON.stringify({ ...stored, created_at: createdAt }));
    };
    backdate(oldKid, 26);
    backdate(newKid, 25);
    const third = await buildTestApp({ dsn, flags });
    assert.deepEqual((await products(third.app, oldJwt)).json(), {
      code: 401,
      message: 'auth: invalid token',
    });
    assert.equal((await products(third.app, newJwt)).statusCode, 200);
    assert.ok(rotateKeys(keyDir, 24 * 3_600_000).removed.includes(oldKid));
    assert.equal(
      readdirSync(keyDir).some((f) => f.startsWith(oldKid)),
      false,
    );
  });

  test('when HS256 is configured, then there is no JWKS', async () => {
    const hs = await buildTestApp({ dsn });
    assert.equal((await hs.app.inject('/.well-known/jwks.json')).statusCode, 404);
  });
});
