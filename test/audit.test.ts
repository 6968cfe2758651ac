// Login throttling (per account and per address, on both APIs) and the audit trail.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setRole } from '../src/accounts/accounts.ts';
import { beginLoginAttempt, forgetOldLoginFailures } from '../src/accounts/login-throttle.ts';
import { buildTestApp, createUser, resetPassword, TEST_PASSWORD } from './helpers.ts';
import { greenlight } from './processes.ts';

const { app, db, dsn } = await buildTestApp();

let addressCounter = 0;
const newAddress = () => `10.1.0.${++addressCounter}`;

function seedLogin(email: string, password: string, address: string, requestId?: string) {
  return app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    remoteAddress: address,
    headers: requestId ? { 'x-request-id': requestId } : {},
    payload: { email, password },
  });
}

function bookLogin(email: string, password: string, address: string) {
  return app.inject({
    method: 'POST',
    url: '/v1/tokens/authentication',
    remoteAddress: address,
    payload: { email, password },
  });
}

async function failFiveTimes(email: (i: number) => string, address: string): Promise<void> {
  for (let i = 0; i < 5; i++)
    assert.equal((await seedLogin(email(i), 'wrong-password', address)).statusCode, 401);
}

describe('login throttling', () => {
  test('when an account has failed 5 times, then both APIs answer 429 with Retry-After until the delay has passed, and a success resets it', async () => {
    const user = await createUser(db);
    await failFiveTimes(() => user.email, newAddress());
    const throttled = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    assert.equal(throttled.statusCode, 429);
    assert.deepEqual(throttled.json(), { code: 429, message: 'rate limit exceeded' });
    assert.equal(throttled.headers['retry-after'], '1');
    const book = await bookLogin(user.email.toUpperCase(), TEST_PASSWORD, newAddress());
    assert.equal(book.statusCode, 429);
    assert.deepEqual(book.json(), { error: 'rate limit exceeded' });
    assert.ok(book.headers['retry-after']);

    // after the delay one more try is allowed; the right password resets the count
    const started = performance.now();
    let res = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    while (res.statusCode === 429) {
      if (performance.now() - started > 3000) assert.fail('still throttled after 3 s');
      await sleep(100);
      res = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    }
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await seedLogin(user.email, 'wrong-password', newAddress())).statusCode, 401);
    assert.equal((await seedLogin(user.email, TEST_PASSWORD, newAddress())).statusCode, 200);
  });

  test("when someone else's guesses hold an account back, then its owner's password reset lifts it", async () => {
    const user = await createUser(db);
    for (let i = 0; i < 8; i++) await seedLogin(user.email, 'wrong-password', newAddress());
    assert.equal((await seedLogin(user.email, TEST_PASSWORD, newAddress())).statusCode, 429);
    const res = await resetPassword(app, db, user.id, 'brand-new-pa55word');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await bookLogin(user.email, 'brand-new-pa55word', newAddress())).statusCode, 201);
  });

  test('when the delay grows, then it doubles with every failure past the fifth', async () => {
    const user = await createUser(db);
    await failFiveTimes(() => user.email, newAddress());
    await db.query(
      "UPDATE login_throttle SET last_failure = last_failure - interval '10 seconds' WHERE key = $1",
      [user.email],
    );
    assert.equal((await seedLogin(user.email, 'wrong-password', newAddress())).statusCode, 401);
    const throttled = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    assert.equal(throttled.statusCode, 429);
    assert.equal(throttled.headers['retry-after'], '2');
  });

  test('when 30 wrong guesses for one account arrive at once, then at most 5 are checked and the right password waits too', async () => {
    const user = await createUser(db);
    const guesses = await Promise.all(
      Array.from({ length: 30 }, () => seedLogin(user.email, 'wrong-password', newAddress())),
    );
    const statuses = guesses.map((res) => res.statusCode);
    assert.equal(statuses.filter((status) => status === 401).length, 5, String(statuses));
    assert.equal(statuses.filter((status) => status === 429).length, 25, String(statuses));
    const { rows } = await db.query(
      "SELECT count(*)::int AS checked FROM audit_events WHERE action = 'login.failure' AND email = $1",
      [user.email],
    );
    assert.deepEqual(rows, [{ checked: 5 }]);
    const owner = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    assert.equal(owner.statusCode, 429);
    assert.ok(Number(owner.headers['retry-after']) >= 1);
  });

  test('when 12 logins with the right password arrive at once, then every one succeeds: those past the fifth wait for the checks in flight', async () => {
    const user = await createUser(db);
    const logins = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        i % 2
          ? seedLogin(user.email, TEST_PASSWORD, newAddress())
          : bookLogin(user.email, TEST_PASSWORD, newAddress()),
      ),
    );
    assert.deepEqual(
      logins.map((res) => res.statusCode),
      Array.from({ length: 12 }, (_, i) => (i % 2 ? 200 : 201)),
    );
    const { rows } = await db.query('SELECT failures, in_flight FROM login_throttle WHERE key = $1', [
      user.email,
    ]);
    assert.deepEqual(rows, [{ failures: 0, in_flight: 0 }]);
  });

  test('when an attempt waits for the checks in flight, then a newer one does not take the slot it waits for', async () => {
    const user = await createUser(db);
    const inFlight = await Promise.all(
      Array.from({ length: 5 }, () => beginLoginAttempt(db, user.email, undefined)),
    );
    const admitted: string[] = [];
    const begin = (name: string) =>
      beginLoginAttempt(db, user.email, undefined).then((attempt) => {
        admitted.push(name);
        return attempt;
      });
    const older = begin('older');
    await sleep(50);
    await inFlight[0]?.succeeded();
    const newer = begin('newer');
    const olderAttempt = await older;
    await sleep(300);
    assert.deepEqual(admitted, ['older'], 'the newer one waits while five are in flight again');
    await inFlight[1]?.succeeded();
    const newerAttempt = await newer;
    assert.deepEqual(admitted, ['older', 'newer']);
    for (const attempt of [...inFlight.slice(2), olderAttempt, newerAttempt]) await attempt.succeeded();
  });

  test('when the right password succeeds while guesses are still being checked, then their advance counts stay', async () => {
    const user = await createUser(db);
    // three guesses counted and still in flight, as their requests would have left them
    await db.query(
      "INSERT INTO login_throttle (kind, key, failures, window_start, last_failure, in_flight, in_flight_since) VALUES ('account', $1, 3, now(), now(), 3, now())",
      [user.email],
    );
    assert.equal((await seedLogin(user.email, TEST_PASSWORD, newAddress())).statusCode, 200);
    const { rows } = await db.query('SELECT failures, in_flight FROM login_throttle WHERE key = $1', [
      user.email,
    ]);
    assert.deepEqual(rows, [{ failures: 3, in_flight: 3 }]);
  });

  test('when the attempts in flight were left by a process that died, then nobody waits for them and their failures still count', async () => {
    const user = await createUser(db);
    await db.query(
      "INSERT INTO login_throttle (kind, key, failures, window_start, last_failure, in_flight, in_flight_since) VALUES ('account', $1, 6, now(), now(), 6, now() - interval '31 seconds')",
      [user.email],
    );
    const started = performance.now();
    const refused = await seedLogin(user.email, TEST_PASSWORD, newAddress());
    assert.equal(refused.statusCode, 429);
    assert.equal(refused.headers['retry-after'], '2');
    assert.ok(performance.now() - started < 2000, 'answered without waiting for the stale attempts');
  });

  test('when one address has failed on 6 different accounts, then a 7th account behind it still logs in, and so does each of the 6 with its password', async () => {
    const address = newAddress();
    const users = await Promise.all(Array.from({ length: 7 }, () => createUser(db)));
    for (const user of users.slice(0, 6))
      assert.equal((await seedLogin(user.email, 'wrong-password', address)).statusCode, 401);
    const seventh = users[6] as { email: string };
    assert.equal((await seedLogin(seventh.email, TEST_PASSWORD, address)).statusCode, 200);
    assert.equal((await bookLogin(seventh.email, TEST_PASSWORD, address)).statusCode, 201);
    assert.equal(
      (await seedLogin((users[0] as { email: string }).email, TEST_PASSWORD, address)).statusCode,
      200,
    );
  });

  test('when one address reaches 100 failures within 15 minutes, then every login from it gets 429 until the window ends', async () => {
    const address = newAddress();
    const user = await createUser(db);
    // 99 failures on other accounts already counted in this window (as 99 requests would)
    await db.query(
      "INSERT INTO login_throttle (kind, key, failures, window_start, last_failure) VALUES ('address', $1, 99, now() - interval '1 minute', now())",
      [address],
    );
    assert.equal(
      (await seedLogin(`nobody-${Date.now()}@example.com`, 'wrong-password', address)).statusCode,
      401,
    );
    const refused = await seedLogin(user.email, TEST_PASSWORD, address);
    assert.equal(refused.statusCode, 429);
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(retryAfter > 13 * 60 && retryAfter <= 14 * 60, String(retryAfter));
    assert.equal((await bookLogin(user.email, TEST_PASSWORD, address)).statusCode, 429);
    assert.equal((await seedLogin(user.email, TEST_PASSWORD, newAddress())).statusCode, 200);
    await db.query(
      "UPDATE login_throttle SET window_start = window_start - interval '15 minutes' WHERE kind = 'address' AND key = $1",
      [address],
    );
    assert.equal((await seedLogin(user.email, TEST_PASSWORD, address)).statusCode, 200);
  });

  test('when the e-mail is longer than any account could have, then 401 on both APIs and nothing is counted', async () => {
    const email = `${randomBytes(6000).toString('hex')}@example.com`;
    const address = newAddress();
    const seed = await seedLogin(email, 'wrong-password', address);
    assert.equal(seed.statusCode, 401, seed.body);
    assert.deepEqual(seed.json(), { code: 401, message: 'auth: invalid email or password' });
    assert.equal((await bookLogin(email, 'wrong-password', address)).statusCode, 401);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM login_throttle WHERE key = $1', [
      address,
    ]);
    assert.deepEqual(rows, [{ n: 0 }]);
  });

  test('when the prune task runs, then counters past the window go and live ones stay', async () => {
    const [stale, live] = [newAddress(), newAddress()];
    assert.equal((await seedLogin('stale@example.com', 'wrong-password', stale)).statusCode, 401);
    assert.equal((await seedLogin('live@example.com', 'wrong-password', live)).statusCode, 401);
    await db.query(
      "UPDATE login_throttle SET last_failure = now() - interval '16 minutes' WHERE key IN ($1, 'stale@example.com')",
      [stale],
    );
    await forgetOldLoginFailures(db);
    const { rows } = await db.query<{ key: string }>(
      'SELECT key FROM login_throttle WHERE key IN ($1, $2, $3, $4) ORDER BY key',
      [stale, live, 'stale@example.com', 'live@example.com'],
    );
    assert.deepEqual(
      rows.map((r) => r.key),
      [live, 'live@example.com'].sort(),
    );
  });
});

describe('audit trail', () => {
  test('when users register, log in, make and revoke keys, change roles and log out, then each is recorded with actor, address and request id', async () => {
    const address = newAddress();
    const email = `audited-${Date.now()}@example.com`;
    const registered = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/register',
      remoteAddress: address,
      headers: { 'x-request-id': 'req-register' },
      payload: { email, password: 'securepassword123' },
    });
    assert.equal(registered.statusCode, 201);
    const userId = registered.json().user.id;
    assert.equal((await seedLogin(email, 'wrong-password', address, 'req-fail')).statusCode, 401);
    const login = await seedLogin(email, 'securepassword123', address, 'req-login');
    const auth = { authorization: `Bearer ${login.json().access_token}` };
    const key = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      remoteAddress: address,
      headers: auth,
      payload: { name: 'ci', scopes: ['products:read'] },
    });
    const keyId = key.json().id;
    await app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${keyId}`,
      remoteAddress: address,
      headers: auth,
    });
    await app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout-all',
      remoteAddress: address,
      headers: auth,
    });
    await setRole(db, email, 'admin');

    const { rows } = await db.query(
      `SELECT action, actor_id, email::text, address, request_id, details FROM audit_events
       WHERE actor_id = $1 OR email = $2 ORDER BY id`,
      [userId, email],
    );
    assert.deepEqual(
      rows.map((r) => [r.action, r.actor_id, r.address, r.request_id]),
      [
        ['user.register', userId, address, 'req-register'],
        ['login.failure', null, address, 'req-fail'],
        ['login.success', userId, address, 'req-login'],
        ['apikey.create', userId, address, rows[3].request_id],
        ['apikey.revoke', userId, address, rows[4].request_id],
        ['logout.all', userId, address, rows[5].request_id],
        ['role.change', null, null, null],
      ],
    );
    assert.deepEqual(rows[3].details, { api_key_id: keyId, name: 'ci', scopes: ['products:read'] });
    assert.deepEqual(rows[6].details, { from: 'user', to: 'admin' });
    assert.equal(rows[1].email, email);
  });

  test('when an admin reads the trail, then newest first in keyset pages; others get 403', async () => {
    const admin = await createUser(db);
    await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [admin.id]);
    const headers = { authorization: `Bearer ${admin.token}` };
    for (let i = 0; i < 3; i++) await seedLogin(admin.email, TEST_PASSWORD, newAddress());
    const page1 = await app.inject({ url: '/api/v1/admin/audit?limit=2', headers });
    assert.equal(page1.statusCode, 200, page1.body);
    const body1 = page1.json();
    assert.equal(body1.data.length, 2);
    assert.ok(body1.data[0].id > body1.data[1].id);
    assert.equal(body1.next_before, body1.data[1].id);
    const page2 = (
      await app.inject({ url: `/api/v1/admin/audit?limit=2&before=${body1.next_before}`, headers })
    ).json();
    assert.ok(page2.data[0].id < body1.data[1].id);
    const { rows } = await db.query('SELECT max(id)::int AS newest FROM audit_events');
    assert.equal(body1.data[0].id, rows[0].newest);

    const bad = await app.inject({ url: '/api/v1/admin/audit?before=x', headers });
    assert.deepEqual(bad.json(), { code: 400, message: 'invalid before cursor' });
    const user = await createUser(db);
    const refused = await app.inject({
      url: '/api/v1/admin/audit',
      headers: { authorization: `Bearer ${user.token}` },
    });
    assert.deepEqual(refused.json(), {
      code: 403,
      message: 'you do not have permission to perform this action',
    });
    const anonymous = await app.inject({ url: '/api/v1/admin/audit' });
    assert.deepEqual(anonymous.json(), { code: 401, message: 'authorization header is required' });
  });
});

describe('greenlight users (command line)', () => {
  test('when an operator sets a role and grants a permission, then the user has them and both are audited', async (t) => {
    const user = await createUser(db);
    const jwt = (await seedLogin(user.email, TEST_PASSWORD, newAddress())).json().access_token;
    const role = greenlight(t, ['users', 'role', user.email, 'admin', '-db-dsn', dsn]);
    const roleExit = await role.waitForExit(30_000);
    assert.equal(roleExit.code, 0, role.stderr());
    assert.equal(role.stdout().trim(), `${user.email}: role admin`);
    const grant = greenlight(t, ['users', 'grant', user.email, 'movies:write', '-db-dsn', dsn]);
    assert.equal((await grant.waitForExit(30_000)).code, 0, grant.stderr());
    const { rows } = await db.query(
      "SELECT action, details FROM audit_events WHERE email = $1 AND action NOT LIKE 'login.%' ORDER BY id",
      [user.email],
    );
    assert.deepEqual(rows, [
      { action: 'role.change', details: { from: 'user', to: 'admin' } },
      { action: 'permission.grant', details: { codes: ['movies:write'] } },
    ]);
    // the JWT issued before the role change no longer works
    const res = await app.inject({ url: '/api/v1/products', headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(res.statusCode, 401);

    const bad = greenlight(t, ['users', 'role', user.email, 'root', '-db-dsn', dsn]);
    assert.equal((await bad.waitForExit(30_000)).code, 1);
    assert.match(bad.stderr(), /usage: greenlight users role EMAIL user\|admin/);
  });
});
