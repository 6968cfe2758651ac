// The identity cache: two app instances on one database, as two servers would be. A change
// made through one (or the CLI's SQL) must reach the other's cache within a second.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdentityCache } from '../src/accounts/identity-cache.ts';
import { grantPermissions, revokePermissions } from '../src/accounts/permissions.sql.ts';
import { deleteTokensForUser } from '../src/accounts/tokens.sql.ts';
import type { Identity } from '../src/accounts/user.ts';
import { notifyIdentityChanged } from '../src/accounts/users.sql.ts';
import { buildTestApp, createTestDatabase, createUser, withToken } from './helpers.ts';

const dsn = await createTestDatabase();
const first = await buildTestApp({ dsn, identityCache: true });
const second = await buildTestApp({ dsn, identityCache: true });

// Polls until the second instance answers `status` for the user's token (bounded).
async function expectWithinOneSecond(token: string, status: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const res = await withToken(second.app, token)('/v1/movies');
    if (res.statusCode === status) return performance.now() - started;
    if (performance.now() - started > 1000)
      assert.fail(`still ${res.statusCode} after 1 s, expected ${status}`);
    await sleep(20);
  }
}

// createUser grants permissions, which announces a change; once the second instance has
// heard it for this user, a later warm() cannot be undone by that stale announcement. (Any
// change of generation is not enough: the announcements of the apps' own users may still be
// arriving.)
async function createUserHeardBySecond(permissions: string[]) {
  const heard = new Set<number | undefined>();
  const stopHearing = (second.identityCache as IdentityCache).onInvalidation((id) => heard.add(id));
  try {
    const user = await createUser(first.db, { permissions });
    const started = performance.now();
    while (!heard.has(user.id)) {
      if (performance.now() - started > 1000) assert.fail('the grant was not announced within 1 s');
      await sleep(5);
    }
    return user;
  } finally {
    stopHearing();
  }
}

async function warm(token: string): Promise<void> {
  assert.equal((await withToken(second.app, token)('/v1/movies')).statusCode, 200);
  assert.equal((await withToken(first.app, token)('/v1/movies')).statusCode, 200);
}

describe('identity cache invalidation across instances', () => {
  test('when a token is cached, then it answers without a query until a change is announced', async () => {
    const user = await createUserHeardBySecond(['movies:read']);
    await warm(user.token);
    // Removed behind the application's back (no NOTIFY): only the cache still knows it.
    await first.db.query('DELETE FROM tokens WHERE user_id = $1', [user.id]);
    assert.equal((await withToken(second.app, user.token)('/v1/movies')).statusCode, 200);
    await notifyIdentityChanged(first.db, user.id);
    await expectWithinOneSecond(user.token, 401);
  });

  test('when a permission is revoked elsewhere, then this instance refuses within a second', async () => {
    const user = await createUser(first.db, { permissions: ['movies:read'] });
    await warm(user.token);
    await revokePermissions(first.db, user.id, ['movies:read']);
    await expectWithinOneSecond(user.token, 403);
  });

  test('when a permission is granted elsewhere, then this instance allows within a second', async () => {
    const user = await createUser(first.db, { permissions: [] });
    assert.equal((await withToken(second.app, user.token)('/v1/movies')).statusCode, 403);
    await grantPermissions(first.db, user.id, ['movies:read']);
    await expectWithinOneSecond(user.token, 200);
  });

  test('when the token is deleted elsewhere, then this instance answers 401 within a second', async () => {
    const user = await createUser(first.db, { permissions: ['movies:read'] });
    await warm(user.token);
    await deleteTokensForUser(first.db, 'authentication', user.id);
    await expectWithinOneSecond(user.token, 401);
  });

  test('when the password is reset through the other instance, then old sessions end everywhere within a second', async () => {
    const user = await createUser(first.db, { permissions: ['movies:read'] });
    await warm(user.token);
    const reset = await first.app.inject({
      method: 'POST',
      url: '/v1/tokens/password-reset',
      payload: { email: user.email },
    });
    assert.equal(reset.statusCode, 202);
    const { rows } = await first.db.query(
      "SELECT data->>'token' AS token FROM pgboss.job WHERE name = 'send-email' AND data->>'userId' = $1::text",
      [user.id],
    );
    const resetToken = rows[0]?.token as string;
    const res = await first.app.inject({
      method: 'PUT',
      url: '/v1/users/password',
      payload: { password: 'brand-new-pa55', token: resetToken },
    });
    assert.equal(res.statusCode, 200);
    await expectWithinOneSecond(user.token, 401);
  });
});

describe('IdentityCache', () => {
  const identity = (id: number): Identity => ({
    id,
    createdAt: new Date(),
    name: 'n',
    email: 'e',
    passwordHash: Buffer.alloc(0),
    activated: true,
    version: 1,
    role: 'user',
    tokenGeneration: 0,
    permissions: [],
  });

  test('when the token expires, then the entry is not served', () => {
    const cache = new IdentityCache();
    cache.enabled = true;
    cache.set('a', identity(1), new Date(Date.now() - 1));
    assert.equal(cache.get('a'), undefined);
  });

  test('when more entries arrive than allowed, then the oldest go', () => {
    const cache = new IdentityCache({ maxEntries: 3 });
    cache.enabled = true;
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, identity(i), new Date(Date.now() + 60_000));
    assert.equal(cache.size, 3);
    assert.equal(cache.get('k0'), undefined);
    assert.equal(cache.get('k9')?.id, 9);
  });

  test('when the cache is off (listener down), then nothing is stored or served', () => {
    const cache = new IdentityCache();
    cache.set('a', identity(1), new Date(Date.now() + 60_000));
    assert.equal(cache.get('a'), undefined);
  });
});

describe('IdentityCache generations', () => {
  test('when an invalidation arrives while a lookup runs, then the lookup result is not cached', () => {
    const cache = new IdentityCache();
    cache.enabled = true;
    const readAt = cache.generation;
    cache.invalidateUser(7); // the NOTIFY overtakes the query
    cache.set('k', { ...({} as Identity), id: 7 }, new Date(Date.now() + 60_000), readAt);
    assert.equal(cache.get('k'), undefined);
  });
});
