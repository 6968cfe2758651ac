// Secrets stay secret on every surface that shows configuration or requests: a real server
// given every secret flag never shows a value on /debug/vars, the settings API, /readyz or its
// log; credentials in a query string never reach the log; the deployment files ship no secret.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { FLAGS } from '../src/config.ts';
import { createPool } from '../src/platform/db.ts';
import { buildTestApp, createTestDatabase, createUser, testConfig } from './helpers.ts';
import { freePort, greenlight, ROOT } from './processes.ts';

const random = () => randomBytes(24).toString('base64url');

test('when a development server gets every secret flag and no -host, then it listens on loopback only, and /debug/vars, the settings API, /readyz and its log never show a value', async (t) => {
  const dsn = await createTestDatabase();
  const values: Record<string, string> = {
    'db-dsn': dsn,
    'redis-url': `redis://:${random()}@127.0.0.1:${await freePort()}`,
    'smtp-password': random(),
    'jwt-secret': random(),
    's3-access-key-id': `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
    's3-secret-access-key': random(),
    'payments-url': `https://shop:${random()}@127.0.0.1:${await freePort()}`,
    // no broker listens there: the relay retries, and its errors must not show the password
    'amqp-url': `amqp://greenlight:${random()}@127.0.0.1:${await freePort()}`,
  };
  // A flag declared secret later must be added here, with a value it accepts.
  assert.deepEqual(
    FLAGS.filter((f) => f.secret)
      .map((f) => f.name)
      .sort(),
    Object.keys(values).sort(),
  );
  // Each value, and the password inside each URL, must never be shown.
  const hidden = Object.values(values).flatMap((value) =>
    value.includes('://') ? [value, decodeURIComponent(new URL(value).password)] : [value],
  );
  const flags = Object.entries(values).flatMap(([name, value], i) =>
    i % 2 === 0 ? [`-${name}`, value] : [`--${name}=${value}`],
  );
  const server = greenlight(t, [
    'serve',
    '-port',
    '0',
    '-env',
    'development',
    '-limiter-enabled=false',
    '-callbacks-addr=',
    '-grpc-addr=',
    '-s3-bucket',
    'posters',
    '-s3-endpoint',
    'http://127.0.0.1:1',
    ...flags,
  ]);
  const started = await server.waitForLog('starting server', 20_000);
  assert.match(String(started.addr), /^127\.0\.0\.1:\d+$/);
  const base = `http://127.0.0.1:${String(started.addr).split(':').pop()}`;

  const db = createPool({ ...testConfig(dsn).db, dsn });
  t.after(() => db.end());
  const admin = await createUser(db);
  await db.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [admin.id]);

  const vars = await fetch(`${base}/debug/vars`);
  assert.equal(vars.status, 200);
  const cmdline = ((await vars.clone().json()) as { cmdline: string[] }).cmdline.join(' ');
  for (const name of Object.keys(values)) assert.match(cmdline, new RegExp(`-${name}[ =]REDACTED`));
  const settings = await fetch(`${base}/v1/admin/settings`, {
    headers: { authorization: `Bearer ${admin.token}` },
  });
  assert.equal(settings.status, 200);
  const readiness = await fetch(`${base}/readyz`);
  const shown = {
    '/debug/vars': await vars.text(),
    '/v1/admin/settings': await settings.text(),
    '/readyz': await readiness.text(),
    log: server.stdout() + server.stderr(),
  };
  for (const [surface, text] of Object.entries(shown)) {
    for (const secret of hidden) assert.ok(!text.includes(secret), `${surface} shows a secret value`);
  }
});

test('when a request carries a credential in its query string, then no log line holds it, and the parameter names stay', async () => {
  const { app, lines } = await buildTestApp({
    configure: (app) => {
      app.get('/v1/broken', async () => {
        throw new Error('broken on purpose');
      });
    },
  });
  const secret = `glk_${random()}`;
  const healthcheck = await app.inject(`/v1/healthcheck?api_key=${secret}&page=2&access%5Ftoken=${secret}`);
  assert.equal(healthcheck.statusCode, 200);
  const broken = await app.inject(`/v1/broken?token=${secret}`);
  assert.equal(broken.statusCode, 500);

  assert.ok(!JSON.stringify(lines).includes(secret), 'a log line holds the credential');
  const paths = lines.filter((line) => line.path !== undefined).map((line) => line.path);
  assert.ok(paths.includes('/v1/healthcheck?api_key=REDACTED&page=2&access%5Ftoken=REDACTED'), String(paths));
  assert.ok(
    lines.some((line) => line.msg === 'request failed' && line.path === '/v1/broken?token=REDACTED'),
    String(paths),
  );
});

test('when compose.yaml and the Dockerfile are read, then no JWT secret ships with them and the containers listen on every interface', () => {
  const compose = parse(readFileSync(`${ROOT}/compose.yaml`, 'utf8'), { merge: true }) as {
    services: Record<string, { build?: string; environment?: Record<string, string> }>;
  };
  const apis = Object.values(compose.services).filter((service) => service.build === '.');
  assert.ok(apis.length > 0);
  for (const api of apis) {
    const env = api.environment ?? {};
    // ${VAR:?message}: compose refuses to start while the variable is unset or empty.
    assert.match(env.GREENLIGHT_JWT_SECRET ?? '', /^\$\{GREENLIGHT_JWT_SECRET:\?[^}]+\}$/);
    assert.equal(env.GREENLIGHT_HOST, '0.0.0.0');
  }
  assert.doesNotMatch(readFileSync(`${ROOT}/compose.yaml`, 'utf8'), /JWT_SECRET:-/);
  assert.match(readFileSync(`${ROOT}/Dockerfile`, 'utf8'), /^\s+GREENLIGHT_HOST=0\.0\.0\.0 \\$/m);
});
