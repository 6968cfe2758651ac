import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { deleteExpiredTokens } from '../src/accounts/tokens.sql.ts';
import { buildTestApp, createUser, withToken } from './helpers.ts';
import { SmtpSink, tokenIn } from './smtp-sink.ts';

const sink = new SmtpSink();
const smtpPort = await sink.start();
after(() => sink.stop());

const { app, db, lines } = await buildTestApp({
  workers: true,
  flags: [
    '-smtp-host',
    '127.0.0.1',
    '-smtp-port',
    String(smtpPort),
    '-smtp-sender',
    'Greenlight <no-reply@test>',
  ],
});

let counter = 0;
const uniqueEmail = () => `person${++counter}-${Date.now()}@example.com`;

function send(method: 'POST' | 'PUT', url: string, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method, url, payload: JSON.stringify(payload), headers });
}

async function register(email = uniqueEmail(), password = 'pa55word') {
  const res = await send('POST', '/v1/users', { name: 'Alice Smith', email, password });
  assert.equal(res.statusCode, 202, res.body);
  const [mail] = await sink.waitFor(email);
  return { email, password, user: res.json().user, mail: mail as NonNullable<typeof mail> };
}

async function activate(token: string) {
  return send('PUT', '/v1/users/activated', { token });
}

async function login(email: string, password: string) {
  return send('POST', '/v1/tokens/authentication', { email, password });
}

describe('registration', () => {
  test('when a user registers, then 202, a movies:read user, and a welcome mail with an activation token', async () => {
    const { email, user, mail } = await register();
    assert.deepEqual(Object.keys(user), ['id', 'created_at', 'name', 'email', 'activated']);
    assert.equal(user.activated, false);
    assert.equal(user.email, email);
    assert.match(user.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const { rows } = await db.query(
      `SELECT users.password_hash, array_agg(permissions.code) AS permissions
       FROM users JOIN users_permissions ON users_permissions.user_id = users.id
       JOIN permissions ON permissions.id = users_permissions.permission_id
       WHERE users.id = $1 GROUP BY users.password_hash`,
      [user.id],
    );
    assert.match(rows[0].password_hash.toString(), /^\$2a\$12\$/);
    assert.deepEqual(rows[0].permissions, ['movies:read']);
    assert.equal(mail.subject, 'Welcome to Greenlight!');
    assert.match(mail.text, new RegExp(`your user ID number is ${user.id}`));
    const token = tokenIn(mail);
    assert.match(mail.html, new RegExp(token));
    assert.match(mail.html, /^<!doctype html>/);
    const stored = await db.query("SELECT expiry FROM tokens WHERE user_id = $1 AND scope = 'activation'", [
      user.id,
    ]);
    const ttlHours = (stored.rows[0].expiry.getTime() - Date.now()) / 3_600_000;
    assert.ok(ttlHours > 71 && ttlHours <= 72, `activation token lives ${ttlHours} h`);
    const sent = lines.find((l) => l.msg === 'email sent' && l.user_id === user.id);
    assert.equal(sent?.template, 'user_welcome');
  });

  const invalid: [Record<string, string>, Record<string, string>][] = [
    [{}, { name: 'must be provided', email: 'must be provided', password: 'must be provided' }],
    [{ name: 'A', email: 'not-an-email', password: 'pa55word' }, { email: 'must be a valid email address' }],
    [{ name: 'A', email: 'a@example.com', password: 'short' }, { password: 'must be at least 8 bytes long' }],
    [
      { name: 'A', email: 'a@example.com', password: 'x'.repeat(73) },
      { password: 'must not be more than 72 bytes long' },
    ],
    [
      { name: 'x'.repeat(501), email: 'a@example.com', password: 'pa55word' },
      { name: 'must not be more than 500 bytes long' },
    ],
  ];
  for (const [body, error] of invalid) {
    test(`when registering with ${JSON.stringify(body).slice(0, 60)}, then 422 ${Object.keys(error)}`, async () => {
      const res = await send('POST', '/v1/users', body);
      assert.equal(res.statusCode, 422);
      assert.deepEqual(res.json(), { error });
    });
  }

  test('when an e-mail registers again in other case, then 422 duplicate', async () => {
    const { email } = await register();
    const res = await send('POST', '/v1/users', {
      name: 'B',
      email: email.toUpperCase(),
      password: 'pa55word',
    });
    assert.equal(res.statusCode, 422);
    assert.deepEqual(res.json(), { error: { email: 'a user with this email address already exists' } });
  });

  test('when one e-mail registers 5 times at once, then exactly one user and one mail', async () => {
    const email = uniqueEmail();
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => send('POST', '/v1/users', { name: 'C', email, password: 'pa55word' })),
    );
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [202, 422, 422, 422, 422]);
    const { rows } = await db.query('SELECT count(*) AS n FROM users WHERE email = $1', [email]);
    assert.equal(rows[0].n, 1);
    await sink.waitFor(email);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(sink.mails.filter((m) => m.to === email).length, 1);
  });
});

describe('activation', () => {
  test('when the mailed token is used, then the user is active; the token works once', async () => {
    const { mail, user } = await register();
    const token = tokenIn(mail);
    const res = await activate(token);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { user: { ...user, activated: true } });
    const again = await activate(token);
    assert.equal(again.statusCode, 422);
    assert.deepEqual(again.json(), { error: { token: 'invalid or expired activation token' } });
  });

  test('when the token is malformed or missing, then 422 with the book message', async () => {
    assert.deepEqual((await activate('abc')).json(), { error: { token: 'must be 26 bytes long' } });
    assert.deepEqual((await send('PUT', '/v1/users/activated', {})).json(), {
      error: { token: 'must be provided' },
    });
  });

  test('when an authentication token is sent as activation token, then 422 (scopes are kept apart)', async () => {
    const { token } = await createUser(db, { activated: false });
    const res = await activate(token);
    assert.equal(res.statusCode, 422);
    assert.deepEqual(res.json(), { error: { token: 'invalid or expired activation token' } });
  });

  test('when the activation token has expired, then 422', async () => {
    const { mail, user } = await register();
    await db.query("UPDATE tokens SET expiry = now() - interval '1 second' WHERE user_id = $1", [user.id]);
    assert.equal((await activate(tokenIn(mail))).statusCode, 422);
  });

  test('when a new activation token is asked for, then a mail; for an active or unknown user, 422', async () => {
    const { email, mail } = await register();
    const res = await send('POST', '/v1/tokens/activation', { email });
    assert.equal(res.statusCode, 202);
    assert.deepEqual(res.json(), {
      message: 'an email will be sent to you containing activation instructions',
    });
    const mails = await sink.waitFor(email, 2);
    assert.equal(mails[1]?.subject, 'Activate your Greenlight account');
    await activate(tokenIn(mail));
    const active = await send('POST', '/v1/tokens/activation', { email });
    assert.deepEqual(active.json(), { error: { email: 'user has already been activated' } });
    const unknown = await send('POST', '/v1/tokens/activation', { email: uniqueEmail() });
    assert.deepEqual(unknown.json(), { error: { email: 'no matching email address found' } });
  });
});

describe('authentication tokens', () => {
  test('when credentials are right, then 201 with a 26-character token valid 24 h', async () => {
    const { email, password } = await register();
    const res = await login(email, password);
    assert.equal(res.statusCode, 201);
    const { authentication_token: token } = res.json();
    assert.match(token.token, /^[A-Z2-7]{26}$/);
    const hours = (Date.parse(token.expiry) - Date.now()) / 3_600_000;
    assert.ok(hours > 23.9 && hours <= 24, `expires in ${hours} h`);
  });

  test('when the password is wrong or the e-mail unknown, then 401, taking the same time', async () => {
    const { email } = await register();
    let started = performance.now();
    const wrong = await login(email, 'wrong-password');
    const wrongMs = performance.now() - started;
    started = performance.now();
    const unknown = await login(uniqueEmail(), 'wrong-password');
    const unknownMs = performance.now() - started;
    for (const res of [wrong, unknown]) {
      assert.equal(res.statusCode, 401);
      assert.deepEqual(res.json(), { error: 'invalid authentication credentials' });
    }
    // Both spend one bcrypt-12 comparison; without the dummy check the unknown e-mail would
    // answer in about a millisecond.
    assert.ok(unknownMs > wrongMs / 3, `unknown ${unknownMs} ms vs wrong ${wrongMs} ms`);
  });

  test('when the login body is invalid, then 422', async () => {
    const res = await send('POST', '/v1/tokens/authentication', { email: 'nope', password: '' });
    assert.deepEqual(res.json(), {
      error: { email: 'must be a valid email address', password: 'must be provided' },
    });
  });
});

describe('authorization', () => {
  const forbiddenCases: [string, Record<string, string>, number, string][] = [
    ['no token', {}, 401, 'you must be authenticated to access this resource'],
    ['a malformed header', { authorization: 'Token abc' }, 401, 'invalid or missing authentication token'],
    [
      'an unknown token',
      { authorization: `Bearer ${'A'.repeat(26)}` },
      401,
      'invalid or missing authentication token',
    ],
    ['a short token', { authorization: 'Bearer abc' }, 401, 'invalid or missing authentication token'],
  ];
  for (const [what, headers, status, error] of forbiddenCases) {
    test(`when GET /v1/movies has ${what}, then ${status}`, async () => {
      const res = await app.inject({ url: '/v1/movies', headers });
      assert.equal(res.statusCode, status);
      assert.deepEqual(res.json(), { error });
      assert.match(String(res.headers.vary), /Authorization/);
      if (error === 'invalid or missing authentication token')
        assert.equal(res.headers['www-authenticate'], 'Bearer');
    });
  }

  test('when a bad token is sent to any endpoint, even the healthcheck, then 401', async () => {
    const res = await app.inject({ url: '/v1/healthcheck', headers: { authorization: 'Bearer nonsense' } });
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });

  test('when the token has expired, then 401', async () => {
    const { token, id } = await createUser(db, { permissions: ['movies:read'] });
    await db.query("UPDATE tokens SET expiry = now() - interval '1 second' WHERE user_id = $1", [id]);
    const res = await withToken(app, token)('/v1/movies');
    assert.equal(res.statusCode, 401);
  });

  test('when the user is not activated, then 403', async () => {
    const { token } = await createUser(db, { activated: false, permissions: ['movies:read'] });
    const res = await withToken(app, token)('/v1/movies');
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json(), { error: 'your user account must be activated to access this resource' });
  });

  test('when a reader writes, then 403; when a writer writes, then 201', async () => {
    const reader = await createUser(db, { permissions: ['movies:read'] });
    const writer = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
    const movie = { title: 'T', year: 2000, runtime: '90 mins', genres: ['drama'] };
    const denied = await withToken(app, reader.token)({ method: 'POST', url: '/v1/movies', payload: movie });
    assert.equal(denied.statusCode, 403);
    assert.deepEqual(denied.json(), {
      error: "your user account doesn't have the necessary permissions to access this resource",
    });
    assert.equal((await withToken(app, reader.token)('/v1/movies')).statusCode, 200);
    const allowed = await withToken(app, writer.token)({ method: 'POST', url: '/v1/movies', payload: movie });
    assert.equal(allowed.statusCode, 201);
  });

  test('when a registered user logs in after activation, then they can read but not write movies', async () => {
    const { email, password, mail } = await register();
    await activate(tokenIn(mail));
    const token = (await login(email, password)).json().authentication_token.token;
    assert.equal((await withToken(app, token)('/v1/movies')).statusCode, 200);
    assert.equal((await withToken(app, token)({ method: 'DELETE', url: '/v1/movies/1' })).statusCode, 403);
  });
});

describe('password reset', () => {
  test('when a reset is asked for and used, then the password changes, sessions end, the token works once', async () => {
    const { email, password, mail } = await register();
    await activate(tokenIn(mail));
    const oldSession = (await login(email, password)).json().authentication_token.token;
    const asked = await send('POST', '/v1/tokens/password-reset', { email });
    assert.equal(asked.statusCode, 202);
    assert.deepEqual(asked.json(), {
      message: 'an email will be sent to you containing password reset instructions',
    });
    const resetMail = (await sink.waitFor(email, 2))[1];
    assert.equal(resetMail?.subject, 'Reset your Greenlight password');
    const resetToken = tokenIn(resetMail as NonNullable<typeof resetMail>);
    const { rows } = await db.query(
      "SELECT expiry FROM tokens WHERE scope = 'password-reset' AND expiry > now()",
    );
    const minutes = Math.max(...rows.map((r) => (r.expiry.getTime() - Date.now()) / 60_000));
    assert.ok(minutes > 44 && minutes <= 45, `reset token lives ${minutes} min`);

    const res = await send('PUT', '/v1/users/password', { password: 'new-pa55word', token: resetToken });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { message: 'your password was successfully reset' });
    assert.equal((await login(email, password)).statusCode, 401);
    assert.equal((await login(email, 'new-pa55word')).statusCode, 201);
    assert.equal((await withToken(app, oldSession)('/v1/movies')).statusCode, 401);
    const again = await send('PUT', '/v1/users/password', { password: 'other-pa55word', token: resetToken });
    assert.deepEqual(again.json(), { error: { token: 'invalid or expired password reset token' } });
  });

  test('when the account is not activated or unknown, then 422', async () => {
    const { email } = await register();
    const inactive = await send('POST', '/v1/tokens/password-reset', { email });
    assert.deepEqual(inactive.json(), { error: { email: 'user account must be activated' } });
    const unknown = await send('POST', '/v1/tokens/password-reset', { email: uniqueEmail() });
    assert.deepEqual(unknown.json(), { error: { email: 'no matching email address found' } });
  });

  test('when the reset body is invalid, then 422 for each field', async () => {
    const res = await send('PUT', '/v1/users/password', { password: 'short', token: 'x' });
    assert.deepEqual(res.json(), {
      error: { password: 'must be at least 8 bytes long', token: 'must be 26 bytes long' },
    });
  });
});

describe('token cleanup', () => {
  test('when the cleanup runs, then expired tokens go and valid ones stay', async () => {
    const expired = await createUser(db);
    const valid = await createUser(db);
    await db.query("UPDATE tokens SET expiry = now() - interval '1 minute' WHERE user_id = $1", [expired.id]);
    assert.ok((await deleteExpiredTokens(db)) >= 1);
    const { rows } = await db.query('SELECT user_id FROM tokens WHERE user_id = ANY($1)', [
      [expired.id, valid.id],
    ]);
    assert.deepEqual(
      rows.map((r) => r.user_id),
      [valid.id],
    );
  });
});
