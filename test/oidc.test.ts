// An external OpenID Connect provider (the oidc-provider package) started here on
// 127.0.0.1: a real client_credentials grant with a resource indicator gives a JWT access
// token, which both APIs accept; when the provider rotates its key away, the token stops
// working.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Provider from 'oidc-provider';
import { buildTestApp, createUser } from './helpers.ts';

const RESOURCE = 'https://api.greenlight.test';

function signingKey(kid: string) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

// The provider, restartable on the same address with other keys (a key rotation).
async function startProvider(port: number, kid: string, email: string | undefined): Promise<Server> {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'shop-backend',
        client_secret: 'shop-backend-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      },
    ],
    features: {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'products',
          audience: RESOURCE,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    jwks: { keys: [signingKey(kid)] },
    extraTokenClaims: () => (email ? { email } : {}),
  });
  const server = createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

async function accessToken(issuer: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from('shop-backend:shop-backend-secret').toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE, scope: 'products' }),
  });
  const body = (await res.json()) as { access_token?: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.access_token as string;
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

// A free port, then the provider on it.
const probe = createServer();
await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
const port = (probe.address() as AddressInfo).port;
await new Promise<void>((resolve) => probe.close(() => resolve()));
const issuer = `http://127.0.0.1:${port}`;
const email = `svc-${Date.now()}@example.com`;
let provider = await startProvider(port, 'key-1', email);
after(() => close(provider));

const oidcFlags = ['-oidc-issuer', issuer, '-oidc-audience', RESOURCE, '-oidc-jwks-cache', '1s'];
const { app, db } = await buildTestApp({
  flags: ['-auth-methods', 'token,jwt,apikey,oidc', '-oidc-auto-provision', ...oidcFlags],
});

const products = (token: string) =>
  app.inject({ method: 'GET', url: '/api/v1/products', headers: { authorization: `Bearer ${token}` } });

describe('OIDC access tokens', () => {
  test('when a client gets a token by client_credentials, then both APIs accept it as the linked user', async () => {
    const existing = await createUser(db, { email, permissions: ['movies:read'] });
    const token = await accessToken(issuer);
    const res = await products(token);
    assert.equal(res.statusCode, 200, res.body);
    const { rows } = await db.query(
      'SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2',
      [issuer, 'shop-backend'],
    );
    assert.deepEqual(rows, [{ user_id: existing.id }]);
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/products',
      headers: { authorization: `Bearer ${token}` },
      payload: { name: 'from the provider', price: 1 },
    });
    assert.equal(created.json().user_id, existing.id);
    const movies = await app.inject({ url: '/v1/movies', headers: { authorization: `Bearer ${token}` } });
    assert.equal(movies.statusCode, 200);
  });

  test('when the e-mail has no local user, then one is made on first use, like a products-API registration', async () => {
    await db.query('DELETE FROM users WHERE email = $1', [email]);
    const token = await accessToken(issuer);
    const res = await products(token);
    assert.equal(res.statusCode, 200, res.body);
    const { rows } = await db.query(
      `SELECT users.name, users.activated FROM users
       JOIN oidc_identities ON oidc_identities.user_id = users.id WHERE users.email = $1`,
      [email],
    );
    assert.deepEqual(rows, [{ name: email.split('@')[0], activated: false }]);
  });

  test('when the provider rotates its key away, then the old token stops working and a new one works', async () => {
    const old = await accessToken(issuer);
    assert.equal((await products(old)).statusCode, 200);
    await close(provider);
    provider = await startProvider(port, 'key-2', email);
    const started = performance.now();
    for (;;) {
      const res = await products(old);
      if (res.statusCode === 401) {
        assert.deepEqual(res.json(), { code: 401, message: 'auth: invalid token' });
        break;
      }
      if (performance.now() - started > 5000) assert.fail(`old token still ${res.statusCode} after 5 s`);
      await sleep(100);
    }
    assert.equal((await products(await accessToken(issuer))).statusCode, 200);
  });

  test('when auto-provisioning is off, then an unknown subject is refused', async () => {
    const strict = await buildTestApp({ flags: ['-auth-methods', 'oidc', ...oidcFlags] });
    const res = await strict.app.inject({
      url: '/api/v1/products',
      headers: { authorization: `Bearer ${await accessToken(issuer)}` },
    });
    assert.deepEqual(res.json(), { code: 401, message: 'auth: invalid token' });
  });
});
