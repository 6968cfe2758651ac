// Runtime settings and feature flags: the admin API and its checks, the audit trail, live
// application in the process (log level, CORS, limiter, GraphQL gate), a change reaching a
// second server process within a second, and the command line.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildConfig, ConfigError, readSettings } from '../src/config.ts';
import { createPool } from '../src/platform/db.ts';
import { parseSetting, rolloutBucket, rolloutIncludes } from '../src/settings/setting.ts';
import { notifySettingChanged } from '../src/settings/settings.sql.ts';
import { range, startTestCallbacks, startUpstream } from './callbacks-helpers.ts';
import { buildTestApp, createTestDatabase, createUser, type Inject, waitFor, withToken } from './helpers.ts';
import { run, startServer } from './processes.ts';

const setup = await buildTestApp({ settings: true });
const { app, db, settings } = setup;

async function createAdmin() {
  const admin = await createUser(db, {});
  await db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.id]);
  return { ...admin, api: withToken(app, admin.token) };
}
const admin = await createAdmin();

async function put(api: Inject, name: string, value: unknown) {
  return api({ method: 'PUT', url: `/v1/admin/settings/${name}`, payload: { value } });
}

// Polls (bounded) until `done` holds: the change comes back through LISTEN/NOTIFY.
async function within(ms: number, what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  const started = performance.now();
  while (!(await done())) {
    if (performance.now() - started > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

describe('settings: the admin API', () => {
  test('when an admin lists the settings, then every one is there with its value and source', async () => {
    const res = await admin.api('/v1/admin/settings');
    assert.equal(res.statusCode, 200);
    const byName = new Map(
      (res.json().settings as { name: string; value: unknown; source: string }[]).map((s) => [s.name, s]),
    );
    for (const name of [
      'limiter-rps',
      'limiter-burst',
      'limiter-enabled',
      'cors-trusted-origins',
      'log-level',
      'callbacks-concurrency',
      'callbacks-ttl',
      'feature-graphql',
    ]) {
      assert.ok(byName.has(name), name);
    }
    assert.deepEqual(byName.get('callbacks-ttl'), {
      name: 'callbacks-ttl',
      value: '30s',
      source: 'flag',
      startup_value: '30s',
      updated_at: null,
      updated_by: null,
    });
    assert.equal(byName.get('feature-graphql')?.value, true);
  });

  test('when a user who is not an admin asks, then 403; without a credential, 401', async () => {
    const user = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
    const api = withToken(app, user.token);
    assert.equal((await api('/v1/admin/settings')).statusCode, 403);
    assert.equal((await put(api, 'log-level', 'debug')).statusCode, 403);
    assert.equal((await api({ method: 'DELETE', url: '/v1/admin/settings/log-level' })).statusCode, 403);
    assert.equal((await app.inject('/v1/admin/settings')).statusCode, 401);
    const { rows } = await db.query('SELECT name FROM settings');
    assert.deepEqual(rows, []);
  });

  test('when the name is unknown, then 404 in the envelope', async () => {
    const res = await put(admin.api, 'no-such-setting', 1);
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
    assert.equal(
      (await admin.api({ method: 'DELETE', url: '/v1/admin/settings/port' })).statusCode,
      404,
      'a start-up-only flag is not a runtime setting',
    );
  });

  test('when the name is a key every object inherits, then 404 and nothing is stored', async () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty']) {
      const res = await admin.api({ method: 'DELETE', url: `/v1/admin/settings/${name}` });
      assert.equal(res.statusCode, 404, name);
    }
    const { rows } = await db.query('SELECT name FROM settings');
    assert.deepEqual(rows, []);
  });

  test('when the value breaks the flag rule, then 422 with the message the start-up flag gives', async () => {
    const cases: [string, unknown, string][] = [
      ['limiter-rps', 0, 'must be between 0.01 and 1000000'],
      ['limiter-rps', 1e-320, 'must be between 0.01 and 1000000'],
      ['limiter-rps', 0.001, 'must be between 0.01 and 1000000'],
      ['limiter-rps', 2_000_000, 'must be between 0.01 and 1000000'],
      ['limiter-burst', 1_000_001, 'must be between 1 and 1000000'],
      ['limiter-burst', Number.MAX_SAFE_INTEGER + 2, 'must be between 1 and 1000000'],
      ['limiter-burst', 1.5, 'must be an integer'],
      ['limiter-burst', '8', 'must be an integer'],
      ['limiter-enabled', 'yes', 'must be a boolean'],
      ['log-level', 'loud', 'must be one of debug, info, warn, error'],
      ['log-level', 'silent', 'must be one of debug, info, warn, error'],
      ['log-level', 'trace', 'must be one of debug, info, warn, error'],
      ['cors-trusted-origins', 'example.com', '"example.com" is not an origin like https://example.com'],
      [
        'cors-trusted-origins',
        'https://ok.example.com https://*.example.com',
        '"https://*.example.com" is not an origin like https://example.com',
      ],
      [
        'cors-trusted-origins',
        'https://a.example.com:99999',
        '"https://a.example.com:99999" is not an origin like https://example.com',
      ],
      [
        'cors-trusted-origins',
        'https://A.example.com',
        '"https://A.example.com" is not an origin like https://example.com',
      ],
      ['cors-trusted-origins', 'https://a\u0000b.example.com', 'must not contain the NUL character'],
      ['callbacks-ttl', '500ms', 'must be between 1s and 720h'],
      ['callbacks-ttl', '100000000000000000000h', 'is longer than any duration (about 292 years)'],
      ['callbacks-ttl', `${'9'.repeat(400)}h`, 'is longer than any duration (about 292 years)'],
      ['callbacks-ttl', 'soon', 'must be a duration such as 30s, 15m or 1h'],
      ['callbacks-concurrency', 0, 'must be between 1 and 100000'],
      [
        'feature-graphql',
        { percent: 101 },
        'must be true, false or {"percent": N} with N an integer from 0 to 100',
      ],
    ];
    for (const [name, value, message] of cases) {
      const res = await put(admin.api, name, value);
      assert.equal(res.statusCode, 422, `${name} ${JSON.stringify(value)}`);
      assert.deepEqual(res.json(), { error: { value: message } }, `${name} ${JSON.stringify(value)}`);
    }
    // The same rule, at start-up.
    assert.throws(
      () => buildConfig(readSettings(['-limiter-rps', '0'], {})),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message === 'invalid -limiter-rps (GREENLIGHT_LIMITER_RPS): must be between 0.01 and 1000000',
    );
    const { rows } = await db.query('SELECT name FROM settings');
    assert.deepEqual(rows, []);
  });

  test('when the body is not {"value": ...}, then 400 or 422', async () => {
    const send = (payload: string) =>
      admin.api({ method: 'PUT', url: '/v1/admin/settings/log-level', payload });
    assert.deepEqual((await send('{')).json(), { error: 'body contains badly-formed JSON' });
    assert.deepEqual((await send('{"value": "info", "x": 1}')).json(), {
      error: 'body contains unknown key "x"',
    });
    assert.equal((await send('[1]')).statusCode, 400);
    const missing = await send('{}');
    assert.equal(missing.statusCode, 422);
    assert.deepEqual(missing.json(), { error: { value: 'must be provided' } });
  });

  test('when an admin changes the log level, then it is stored, audited and applied', async (t) => {
    const res = await put(admin.api, 'log-level', 'warn');
    assert.equal(res.statusCode, 200);
    const { setting } = res.json();
    assert.equal(setting.value, 'warn');
    assert.equal(setting.source, 'setting');
    assert.equal(setting.startup_value, 'info');
    assert.equal(setting.updated_by, admin.email);
    t.after(() => admin.api({ method: 'DELETE', url: '/v1/admin/settings/log-level' }));

    const { rows } = await db.query(
      `SELECT actor_id, email, request_id, details FROM audit_events
        WHERE action = 'setting.change' ORDER BY id DESC LIMIT 1`,
    );
    assert.equal(rows[0].actor_id, admin.id);
    assert.equal(rows[0].email, admin.email);
    assert.ok(rows[0].request_id);
    assert.deepEqual(rows[0].details, {
      name: 'log-level',
      from: 'info',
      to: 'warn',
      source: 'setting',
      by: admin.email,
    });

    await within(1000, 'log level applied', () => settings.get('log-level') === 'warn');
    const before = setup.lines.length;
    await admin.api('/v1/healthcheck');
    assert.equal(
      setup.lines.slice(before).filter((l) => l.msg === 'request').length,
      0,
      'request lines are info: not written at warn',
    );

    const back = await admin.api({ method: 'DELETE', url: '/v1/admin/settings/log-level' });
    assert.equal(back.statusCode, 200);
    assert.equal(back.json().setting.source, 'flag');
    await within(1000, 'log level back to the flag', () => settings.get('log-level') === 'info');
  });

  test('when a setting is set to its start-up value, then nothing is stored: it follows the flag', async () => {
    assert.equal((await put(admin.api, 'callbacks-ttl', '45s')).statusCode, 200);
    assert.equal(
      (await db.query(`SELECT value FROM settings WHERE name = 'callbacks-ttl'`)).rows[0].value,
      '45s',
    );
    await within(1000, 'ttl applied', () => settings.get('callbacks-ttl') === 45_000);
    const res = await put(admin.api, 'callbacks-ttl', '30000ms');
    assert.equal(res.json().setting.source, 'flag');
    assert.equal((await db.query(`SELECT value FROM settings WHERE name = 'callbacks-ttl'`)).rowCount, 0);
    await within(1000, 'ttl back', () => settings.get('callbacks-ttl') === 30_000);
  });

  test('when the listening connection was down during a change, then the change applies on reconnection', async (t) => {
    await db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'greenlight-settings-listener' AND datname = current_database()`,
    );
    // Written behind the API's back: no NOTIFY, only the re-read on reconnection can see it.
    await db.query(`INSERT INTO settings (name, value, updated_by) VALUES ('limiter-rps', '7', 'psql')`);
    t.after(() => admin.api({ method: 'DELETE', url: '/v1/admin/settings/limiter-rps' }));
    await within(3000, 'the change read on reconnection', () => settings.get('limiter-rps') === 7);
    assert.equal(settings.limits.rps, 7);
    assert.ok(setup.lines.some((l) => l.msg === 'settings listener lost; changes apply when it reconnects'));
  });

  test('when the table holds a value this version refuses, then it is logged and the flag stays in force', async (t) => {
    await db.query(
      `INSERT INTO settings (name, value, updated_by) VALUES ('limiter-burst', '"lots"', 'psql')`,
    );
    t.after(() => admin.api({ method: 'DELETE', url: '/v1/admin/settings/limiter-burst' }));
    await notifySettingChanged(db, 'limiter-burst');
    await within(1000, 'the refusal logged', () =>
      setup.lines.some((l) => l.msg === 'invalid stored setting ignored' && l.setting === 'limiter-burst'),
    );
    assert.equal(settings.get('limiter-burst'), setup.config.limiter.burst);
    assert.equal(settings.limits.burst, setup.config.limiter.burst);
  });

  test('when the trusted origins change, then CORS answers by the new list at once', async (t) => {
    const origin = 'https://new.example.com';
    const ask = () => app.inject({ url: '/v1/healthcheck', headers: { origin } });
    assert.equal((await ask()).headers['access-control-allow-origin'], undefined);
    assert.equal(
      (await put(admin.api, 'cors-trusted-origins', `${origin} https://b.example.com`)).statusCode,
      200,
    );
    t.after(() => admin.api({ method: 'DELETE', url: '/v1/admin/settings/cors-trusted-origins' }));
    await within(
      1000,
      'origin trusted',
      async () => (await ask()).headers['access-control-allow-origin'] === origin,
    );
  });
});

describe('feature flags', () => {
  test('when a rollout is a percentage, then each user always gets the same answer, and about that share gets it', () => {
    for (const percent of [0, 10, 50, 90, 100]) {
      let included = 0;
      for (let id = 1; id <= 10_000; id++) {
        const first = rolloutIncludes({ percent }, 'graphql', id);
        assert.equal(rolloutIncludes({ percent }, 'graphql', id), first);
        if (first) included++;
      }
      assert.ok(Math.abs(included / 100 - percent) <= 2, `${percent} %: ${included} of 10,000`);
    }
    assert.equal(
      rolloutIncludes({ percent: 50 }, 'graphql', undefined),
      false,
      'anonymous: not in a partial rollout',
    );
    assert.equal(rolloutIncludes({ percent: 100 }, 'graphql', undefined), true);
    assert.notDeepEqual(
      Array.from({ length: 20 }, (_, i) => rolloutBucket('graphql', i)),
      Array.from({ length: 20 }, (_, i) => rolloutBucket('other', i)),
      'features spread users differently',
    );
    assert.deepEqual(parseSetting('feature-graphql', { percent: 25 }), { percent: 25 });
  });

  test('when graphql is off, then /graphql is 404 in the envelope; rolled out to a share, only those users get it', async (t) => {
    const query = { query: '{ me { user { email } } }' };
    const user = await createUser(db, { permissions: ['movies:read'] });
    const graphql = (token: string) =>
      withToken(app, token)({ method: 'POST', url: '/graphql', payload: query });
    assert.equal((await graphql(user.token)).statusCode, 200, 'on by default');

    assert.equal((await put(admin.api, 'feature-graphql', false)).statusCode, 200);
    t.after(() => admin.api({ method: 'DELETE', url: '/v1/admin/settings/feature-graphql' }));
    await within(1000, 'graphql off', () => !settings.isEnabled('graphql', user));
    const off = await graphql(user.token);
    assert.equal(off.statusCode, 404);
    assert.deepEqual(off.json(), { error: 'the requested resource could not be found' });
    assert.equal((await app.inject('/graphql?query=%7B__typename%7D')).statusCode, 404);

    // Two users on either side of a 50 % rollout.
    const users: { id: number; token: string; in: boolean }[] = [];
    while (users.length < 2 || users.every((u) => u.in === users[0]?.in)) {
      const made = await createUser(db, { permissions: ['movies:read'] });
      users.push({ ...made, in: rolloutBucket('graphql', made.id) < 50 });
    }
    assert.equal((await put(admin.api, 'feature-graphql', { percent: 50 })).statusCode, 200);
    await within(1000, 'graphql at 50 %', () => typeof settings.get('feature-graphql') === 'object');
    for (const u of users) {
      assert.equal((await graphql(u.token)).statusCode, u.in ? 200 : 404, `user ${u.id}`);
      assert.equal(settings.isEnabled('graphql', u), u.in);
    }
  });
});

describe('settings in the callback service', () => {
  test('when the concurrency and TTL are retuned, then lookups and the sweep follow at once', async () => {
    const { upstream, url } = await startUpstream({ minDelayMs: 1500, maxDelayMs: 1600 });
    const callbacks = await startTestCallbacks(url, {
      flags: ['-callbacks-concurrency', '2', '-callbacks-ttl', '30s', '-callbacks-upstream-timeout', '5s'],
    });
    const requested = () => [...upstream.requests.values()].reduce((a, b) => a + b, 0);
    assert.equal((await callbacks.post({ object_ids: range(1, 20) })).status, 200);
    await waitFor('two lookups at concurrency 2', () => requested() >= 2);
    assert.equal(requested(), 2);
    callbacks.service.retune({ concurrency: 10 });
    // At 2 the next lookups would start only when the first end, 1.5 s in.
    await waitFor('ten lookups at concurrency 10', () => requested() >= 10, 1000);

    await callbacks.query(
      `INSERT INTO callback_objects (object_id, last_seen) VALUES (900, now() - interval '5 seconds')`,
    );
    assert.equal(await callbacks.service.sweep(), 0);
    callbacks.service.retune({ ttlMs: 1000 });
    assert.equal(await callbacks.service.sweep(), 1);
  });
});

describe('settings across processes and from the command line', () => {
  test('when a setting changes through one server, then a second server on the database limits by it within a second', async (t) => {
    const dsn = await createTestDatabase();
    const limited = [
      '-db-dsn',
      dsn,
      '-limiter-enabled=true',
      '-limiter-rps',
      '0.01',
      '-limiter-burst',
      '100',
    ];
    const [first, second] = await Promise.all([
      // Generous: the machine may be busy, and this is not what the test measures.
      startServer(t, limited, 30_000),
      startServer(t, [...limited, '-workers', '2'], 30_000),
    ]);
    const workersLogging = (msg: string) =>
      new Set(second.logs.filter((l) => l.msg === msg).map((l) => l.pid)).size;
    await within(30_000, 'both workers listening', () => workersLogging('starting server') === 2);
    const pool = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
    t.after(() => pool.end());
    const boss = await createUser(pool, {});
    await pool.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [boss.id]);
    const healthcheck = () => fetch(`http://127.0.0.1:${second.port}/v1/healthcheck`);
    assert.equal((await healthcheck()).status, 200);

    const res = await fetch(`http://127.0.0.1:${first.port}/v1/admin/settings/limiter-burst`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${boss.token}` },
      body: JSON.stringify({ value: 2 }),
    });
    assert.equal(res.status, 200);
    const changedAt = performance.now();
    // A bucket keeps its tokens, capped by the new burst: two more requests, then 429.
    let answered = 0;
    await within(1000, 'the second server limiting at burst 2', async () => {
      const status = (await healthcheck()).status;
      answered++;
      return status === 429;
    });
    assert.ok(answered <= 60, `${answered} requests before the 429`);
    // Every worker of the second server applied it, within the second.
    await within(
      1000 - (performance.now() - changedAt),
      'both workers applying the setting',
      () => workersLogging('setting applied') === 2,
    );
    for (const applied of second.logs.filter((l) => l.msg === 'setting applied')) {
      assert.equal(applied.setting, 'limiter-burst');
      assert.equal(applied.value, 2);
    }

    // The callback service's TTL: an object seen 10 s ago outlives the 30 s flag, not 2 s.
    await pool.query(
      `INSERT INTO callback_objects (object_id, last_seen) VALUES (42, now() - interval '10 seconds')`,
    );
    const ttl = await fetch(`http://127.0.0.1:${first.port}/v1/admin/settings/callbacks-ttl`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${boss.token}` },
      body: JSON.stringify({ value: '2s' }),
    });
    assert.equal(ttl.status, 200);
    await within(3000, 'the object expired by the new TTL', async () => {
      return (await pool.query('SELECT 1 FROM callback_objects WHERE object_id = 42')).rowCount === 0;
    });
  });

  test('when an operator uses greenlight config, then set, get, list and unset work and are audited', async (t) => {
    const dsn = await createTestDatabase();
    const cli = (...args: string[]) => run(t, ['config', ...args, '-db-dsn', dsn]);
    const set = await cli('set', 'limiter-burst', '7');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^limiter-burst\t7\t\(set by cli:\S+ at \S+\)$/m);
    const get = await cli('get', 'limiter-burst');
    assert.equal(get.stdout.trim(), '7');
    const list = await cli('list');
    assert.match(list.stdout, /^limiter-burst\t7\t\(set by cli:/m);
    const notStored = "\\(no setting: each server's own start-up flag; shown: this command's\\)";
    assert.match(list.stdout, new RegExp(`^log-level\t"info"\t${notStored}$`, 'm'));
    assert.match(list.stdout, new RegExp(`^feature-graphql\ttrue\t${notStored}$`, 'm'));
    assert.match(
      (await cli('get', 'log-level')).stdout,
      new RegExp(`^log-level\t"info"\t${notStored}$`, 'm'),
    );

    // A database the command cannot reach: one line, no stack.
    const unreachable = await run(t, ['config', 'list', '-db-dsn', 'postgres://u:p@127.0.0.1:1/nothing']);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /^greenlight: cannot use the database: .*ECONNREFUSED.*\n$/);
    // One without our tables (another -data-dir than the server's): one line that says so.
    const empty = await run(t, [
      'users',
      'grant',
      'a@example.com',
      'movies:write',
      '-db-dsn',
      await createTestDatabase({ template: false }),
    ]);
    assert.equal(empty.code, 1);
    assert.match(
      empty.stderr,
      /^greenlight: the database has no Greenlight tables \(relation "users" does not exist\): give the server's -data-dir or -db-dsn, or create them with `greenlight migrate up`\n$/,
    );

    const bad = await cli('set', 'limiter-burst', 'banana');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /greenlight: invalid value banana for limiter-burst: must be an integer/);
    const unknown = await cli('get', 'nothing');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown setting "nothing"/);

    const unset = await cli('unset', 'limiter-burst');
    assert.match(unset.stdout, new RegExp(`^limiter-burst\t4\t${notStored}$`, 'm'));

    // The command's own flags are not the servers': a value equal to them is stored all the same
    // (a server started with -limiter-enabled=false must get the true it is sent).
    const same = await cli('set', 'limiter-enabled', 'true');
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /^limiter-enabled\ttrue\t\(set by cli:\S+ at \S+\)$/m);
    assert.equal((await cli('get', 'limiter-enabled')).stdout.trim(), 'true');
    const pool = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
    t.after(() => pool.end());
    const { rows } = await pool.query(
      `SELECT actor_id, details FROM audit_events WHERE action = 'setting.change' ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((r) => [r.actor_id, r.details.from, r.details.to, r.details.source]),
      [
        [null, null, 7, 'setting'],
        [null, 7, null, 'flag'],
        [null, null, true, 'setting'],
      ],
    );
    assert.match(rows[0].details.by, /^cli:/);
  });
});
