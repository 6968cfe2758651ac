// An external OpenID Connect provider (the oidc-provider package) started here on
// 127.0.0.1: a real client_credentials grant with a resource indicator gives a JWT access
// token (its subject is the client id), which both APIs accept once the subject is linked to
// an account: by its owner's explicit step, or by auto-provisioning a NEW account for a
// verified e-mail nobody has; never by a matching e-mail. When the provider rotates its key
// away, the token stops working.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Provider from 'oidc-provider';
import { setRole } from '../src/accounts/accounts.ts';
import { buildTestApp, createUser, resetPassword, TEST_PASSWORD } from './helpers.ts';

const RESOURCE = 'https://api.greenlight.test';

function signingKey(kid: string) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

// Each client of the provider is one subject (client_credentials tokens are the client's
// own); the claims its tokens carry besides, by client id.
const SUBJECTS = [
  'shop-backend',
  'existing-unverified',
  'existing-verified',
  'existing-padded',
  'new-unverified',
  'new-false',
  'new-string',
  'owner',
  'owner-jwt',
  'recovered',
  'listed',
  // OpenID Connect caps a subject at 255 characters
  `long-${'x'.repeat(300)}`,
] as const;
type Subject = (typeof SUBJECTS)[number];
const claimsOf = new Map<string, Record<string, unknown>>();

// The provider, restartable on the same address with other keys (a key rotation).
async function startProvider(port: number, kid: string): Promise<Server> {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: SUBJECTS.map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })),
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
    extraTokenClaims: (_ctx, token) => claimsOf.get((token as { clientId: string }).clientId) ?? {},
  });
  const server = createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

async function accessToken(issuer: string, subject: Subject = 'shop-backend'): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${subject}:${subject}-secret`).toString('base64')}`,
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
claimsOf.set('shop-backend', { email, email_verified: true });
let provider = await startProvider(port, 'key-1');
after(() => close(provider));

const oidcFlags = ['-oidc-issuer', issuer, '-oidc-audience', RESOURCE, '-oidc-jwks-cache', '1s'];
const { app, db } = await buildTestApp({
  flags: ['-auth-methods', 'token,jwt,apikey,oidc', '-oidc-auto-provision', ...oidcFlags],
});

const products = (token: string) =>
  app.inject({ method: 'GET', url: '/api/v1/products', headers: { authorization: `Bearer ${token}` } });

const book = (token: string, url = '/v1/movies') =>
  app.inject({ url, headers: { authorization: `Bearer ${token}` } });
const link = (credential: string | undefined, payload: unknown) =>
  app.inject({
    method: 'POST',
    url: '/v1/users/identities',
    headers: credential ? { authorization: `Bearer ${credential}` } : {},
    payload: payload as Record<string, unknown>,
  });
const linkedUser = async (subject: string) =>
  (
    await db.query('SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2', [
      issuer,
      subject,
    ])
  ).rows[0]?.user_id;
const UNLINKED = {
  products:
    'auth: an account with this email exists: sign in to it and link this identity with POST /v1/users/identities',
  book: 'an account with this email address exists: sign in to it and link this identity with POST /v1/users/identities',
};

describe('OIDC access tokens', () => {
  test('when a provider token carries the e-mail of an existing account, then it gets nothing of it, whether email_verified is missing or true, the e-mail padded or in other case', async () => {
    const admin = await createUser(db, { email: `admin-${Date.now()}@example.com` });
    await setRole(db, admin.email, 'admin');
    const cases: Array<[Subject, Record<string, unknown>, string]> = [
      ['existing-unverified', { email: admin.email }, 'auth: invalid token'],
      ['existing-verified', { email: admin.email, email_verified: true }, UNLINKED.products],
      [
        'existing-padded',
        { email: `  ${admin.email.toUpperCase()} `, email_verified: true },
        UNLINKED.products,
      ],
    ];
    for (const [subject, claims, message] of cases) {
      claimsOf.set(subject, claims);
      const token = await accessToken(issuer, subject);
      const audit = await app.inject({
        url: '/api/v1/admin/audit',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(audit.statusCode, 401, subject);
      assert.deepEqual(audit.json(), { code: 401, message }, subject);
      const movies = await book(token);
      assert.equal(movies.statusCode, 401, subject);
      if (message === UNLINKED.products) assert.deepEqual(movies.json(), { error: UNLINKED.book });
      assert.equal(await linkedUser(subject), undefined, subject);
    }
    const { rows } = await db.query('SELECT id FROM users WHERE email = $1', [admin.email]);
    assert.deepEqual(rows, [{ id: admin.id }]);
  });

  test('when email_verified is missing, false or not the boolean true, then no account is made and the token is refused', async () => {
    const cases: Array<[Subject, (email: string) => Record<string, unknown>]> = [
      ['new-unverified', (email) => ({ email })],
      ['new-false', (email) => ({ email, email_verified: false })],
      ['new-string', (email) => ({ email, email_verified: 'true' })],
    ];
    for (const [subject, claims] of cases) {
      const fresh = `${subject}-${Date.now()}@example.com`;
      claimsOf.set(subject, claims(fresh));
      const res = await products(await accessToken(issuer, subject));
      assert.deepEqual(res.json(), { code: 401, message: 'auth: invalid token' }, subject);
      const { rows } = await db.query('SELECT id FROM users WHERE email = $1', [fresh]);
      assert.deepEqual(rows, [], subject);
      assert.equal(await linkedUser(subject), undefined, subject);
    }
  });

  test('when the verified e-mail has no local user, then one is made on first use, like a products-API registration', async () => {
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

  test('when the owner links the identity with its own token and the provider token, then the provider token acts as the owner on both APIs', async () => {
    const owner = await createUser(db, { permissions: ['movies:read'] });
    claimsOf.set('owner', { email: owner.email, email_verified: true });
    const token = await accessToken(issuer, 'owner');
    assert.deepEqual((await products(token)).json(), { code: 401, message: UNLINKED.products });

    const linked = await link(owner.token, { provider_token: token });
    assert.equal(linked.statusCode, 201, linked.body);
    assert.deepEqual(linked.json(), { identity: { issuer, subject: 'owner' } });
    assert.equal(await linkedUser('owner'), owner.id);
    const again = await link(owner.token, { provider_token: token });
    assert.equal(again.statusCode, 200, again.body);

    assert.equal((await products(token)).statusCode, 200);
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/products',
      headers: { authorization: `Bearer ${token}` },
      payload: { name: 'from the provider', price: 1 },
    });
    assert.equal(created.json().user_id, owner.id);
    assert.equal((await book(token)).statusCode, 200);
    const { rows } = await db.query(
      "SELECT details FROM audit_events WHERE action = 'identity.link' AND actor_id = $1",
      [owner.id],
    );
    assert.deepEqual(rows, [{ details: { issuer, subject: 'owner' } }]);
  });

  test("when a link lacks either proof, or the identity is someone else's, then it is refused and nothing is linked", async () => {
    const owner = await createUser(db);
    claimsOf.set('owner-jwt', { email: owner.email, email_verified: true });
    const providerToken = await accessToken(issuer, 'owner-jwt');
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: owner.email, password: TEST_PASSWORD },
    });
    const jwt = login.json().access_token as string;
    const key = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { authorization: `Bearer ${jwt}` },
      payload: { name: 'ci', scopes: ['movies:read'] },
    });
    const [header, payload] = providerToken.split('.') as [string, string];
    const forged = `${header}.${payload}.${Buffer.from('not the signature').toString('base64url')}`;
    const someoneElses = await accessToken(issuer); // shop-backend: provisioned above

    const cases: Array<[string, string | undefined, unknown, number, unknown]> = [
      [
        'no credential',
        undefined,
        { provider_token: providerToken },
        401,
        {
          error: 'you must be authenticated to access this resource',
        },
      ],
      ['an API key', key.json().key, { provider_token: providerToken }, 403, undefined],
      ['a provider token as the credential', someoneElses, { provider_token: providerToken }, 403, undefined],
      ['no provider token', jwt, {}, 422, { error: { provider_token: 'must be provided' } }],
      [
        'a forged provider token',
        jwt,
        { provider_token: forged },
        422,
        {
          error: { provider_token: 'invalid or expired provider token' },
        },
      ],
      [
        'our own JWT as the provider token',
        owner.token,
        { provider_token: jwt },
        422,
        {
          error: { provider_token: 'invalid or expired provider token' },
        },
      ],
      [
        "another account's identity",
        jwt,
        { provider_token: someoneElses },
        422,
        {
          error: { provider_token: 'this identity is linked to another account' },
        },
      ],
      ['an unknown field', jwt, { provider_token: providerToken, user_id: 1 }, 400, undefined],
      ['a provider token that is not a string', jwt, { provider_token: 5 }, 400, undefined],
    ];
    for (const [name, credential, body, status, expected] of cases) {
      const res = await link(credential, body);
      assert.equal(res.statusCode, status, `${name}: ${res.body}`);
      if (expected) assert.deepEqual(res.json(), expected, name);
    }
    const malformed = await app.inject({
      method: 'POST',
      url: '/v1/users/identities',
      headers: { authorization: `Bearer ${jwt}` },
      payload: '{',
    });
    assert.equal(malformed.statusCode, 400, malformed.body);
    assert.equal(await linkedUser('owner-jwt'), undefined);
    assert.notEqual(await linkedUser('shop-backend'), owner.id);

    const doc = (await app.inject({ url: '/v1/openapi.json' })).json();
    const operation = doc.paths['/v1/users/identities'].post;
    assert.equal(operation.operationId, 'linkIdentity');
    assert.deepEqual(Object.keys(operation.responses).sort(), [
      '200',
      '201',
      '400',
      '401',
      '403',
      '422',
      '429',
      '500',
    ]);

    const withJwt = await link(jwt, { provider_token: providerToken });
    assert.equal(withJwt.statusCode, 201, withJwt.body);
    assert.equal((await products(providerToken)).statusCode, 200);
  });

  test('when the password is reset, then the identities linked to the account act for it no more', async () => {
    const owner = await createUser(db);
    const token = await accessToken(issuer, 'recovered');
    assert.equal((await link(owner.token, { provider_token: token })).statusCode, 201);
    assert.equal((await products(token)).statusCode, 200);
    const res = await resetPassword(app, db, owner.id, 'new-pa55word');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await products(token)).statusCode, 401);
    assert.equal(await linkedUser('recovered'), undefined);
  });

  test('when an account is not activated, then it may not link an identity; its owner lists and removes links', async () => {
    const squatter = await createUser(db, { activated: false });
    const token = await accessToken(issuer, 'listed');
    const refused = await link(squatter.token, { provider_token: token });
    assert.equal(refused.statusCode, 403, refused.body);
    assert.deepEqual(refused.json(), {
      error: 'your user account must be activated to access this resource',
    });
    assert.equal(await linkedUser('listed'), undefined);

    const owner = await createUser(db);
    assert.equal((await link(owner.token, { provider_token: token })).statusCode, 201);
    const listed = await book(owner.token, '/v1/users/identities');
    assert.equal(listed.statusCode, 200, listed.body);
    assert.deepEqual(
      listed.json().identities.map((i: { issuer: string; subject: string }) => [i.issuer, i.subject]),
      [[issuer, 'listed']],
    );
    assert.equal((await book(token, '/v1/users/identities')).statusCode, 403, 'not with the provider token');
    const unlink = (credential: string) =>
      app.inject({
        method: 'DELETE',
        url: '/v1/users/identities/listed',
        headers: { authorization: `Bearer ${credential}` },
      });
    assert.equal((await unlink(squatter.token)).statusCode, 404, "not another account's link");
    const removed = await unlink(owner.token);
    assert.deepEqual(
      [removed.statusCode, removed.json()],
      [200, { message: 'identity successfully unlinked' }],
    );
    assert.equal((await products(token)).statusCode, 401);
    assert.equal((await unlink(owner.token)).statusCode, 404);
    const { rows } = await db.query(
      "SELECT action FROM audit_events WHERE actor_id = $1 AND action LIKE 'identity.%' ORDER BY id",
      [owner.id],
    );
    assert.deepEqual(
      rows.map((row) => row.action),
      ['identity.link', 'identity.unlink'],
    );
  });

  test('when a provider token has a subject over 255 characters, then it is refused as a credential and as a link (4xx, not 500)', async () => {
    const owner = await createUser(db);
    const token = await accessToken(issuer, `long-${'x'.repeat(300)}`);
    assert.equal((await products(token)).statusCode, 401);
    assert.equal((await link(owner.token, { provider_token: token })).statusCode, 422);
  });

  test('when the provider rotates its key away, then the old token stops working and a new one works', async () => {
    const old = await accessToken(issuer);
    assert.equal((await products(old)).statusCode, 200);
    await close(provider);
    provider = await startProvider(port, 'key-2');
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
