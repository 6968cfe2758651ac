import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { EMAIL_QUEUE } from '../src/accounts/accounts.ts';
import { buildApp, createMetrics } from '../src/app.ts';
import { QUEUES } from '../src/background.ts';
import { createPool, type Db } from '../src/platform/db.ts';
import { startJobs } from '../src/platform/jobs.ts';
import { captureLogger, createTestDatabase, createUser, testConfig } from './helpers.ts';

const LOOPBACK = '127.0.0.1';
const REMOTE = '203.0.113.9';
const MESSAGES = {
  authenticationRequired: 'you must be authenticated to access this resource',
  notPermitted: "your user account doesn't have the necessary permissions to access this resource",
  inactive: 'your user account must be activated to access this resource',
  invalidToken: 'invalid or missing authentication token',
};

const dsn = await createTestDatabase();

// The app as the server builds it (createMetrics watches the e-mail queue), on this file's
// database; closed after the file's tests.
async function buildMetricsApp(flags: string[] = []): Promise<{ app: FastifyInstance; db: Db }> {
  const config = testConfig(dsn, flags);
  const db = createPool({ ...config.db, dsn });
  const { logger } = captureLogger();
  const jobs = await startJobs(dsn, logger, QUEUES);
  const app = buildApp({ config, db, logger, jobs, metrics: createMetrics(config, db, jobs) });
  await app.ready();
  after(async () => {
    await app.close();
    await jobs.stop({ graceful: true, wait: true, timeout: 5000 });
    await db.end();
  });
  return { app, db };
}

const { app, db } = await buildMetricsApp();
const viewer = await createUser(db, { permissions: ['metrics:view'] });
const reader = await createUser(db, { permissions: ['movies:read'] });
const inactiveViewer = await createUser(db, { permissions: ['metrics:view'], activated: false });

function get(
  target: FastifyInstance,
  url: string,
  remoteAddress: string,
  token?: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return target.inject({
    url,
    remoteAddress,
    headers: token === undefined ? headers : { ...headers, authorization: `Bearer ${token}` },
  });
}

type DebugVars = {
  version: string;
  goroutines: number;
  database: Record<string, number>;
  timestamp: number;
  memstats: Record<string, number>;
  cmdline: string[];
  total_requests_received: number;
  total_responses_sent: number;
  total_processing_time_μs: number;
  total_responses_sent_by_status: Record<string, number>;
};

async function debugVars(target: FastifyInstance = app): Promise<DebugVars> {
  const res = await get(target, '/debug/vars', LOOPBACK);
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as DebugVars;
}

async function prometheus(target: FastifyInstance = app): Promise<string> {
  const res = await get(target, '/metrics', LOOPBACK);
  assert.equal(res.statusCode, 200, res.body);
  return res.body;
}

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('GET /debug/vars', () => {
  test('when asked from loopback, then 200 with the expvar document', async () => {
    const res = await get(app, '/debug/vars', LOOPBACK);
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const vars = res.json() as DebugVars;
    assert.deepEqual(Object.keys(vars).sort(), [
      'cmdline',
      'database',
      'goroutines',
      'memstats',
      'timestamp',
      'total_processing_time_μs',
      'total_requests_received',
      'total_responses_sent',
      'total_responses_sent_by_status',
      'version',
    ]);
    assert.equal(typeof vars.version, 'string');
    assert.ok(Number.isInteger(vars.goroutines) && vars.goroutines >= 0);
    assert.equal(typeof vars.database, 'object');
    // Every field of Go's sql.DBStats, as the book's clients read them.
    assert.deepEqual(Object.keys(vars.database).sort(), [
      'Idle',
      'InUse',
      'MaxIdleClosed',
      'MaxIdleTimeClosed',
      'MaxLifetimeClosed',
      'MaxOpenConnections',
      'OpenConnections',
      'WaitCount',
      'WaitDuration',
    ]);
    for (const [key, value] of Object.entries(vars.database)) {
      assert.ok(Number.isInteger(value) && value >= 0, `${key}: ${value}`);
    }
    assert.equal(vars.database.MaxOpenConnections, 25);
    assert.ok(Number.isInteger(vars.timestamp));
    assert.ok(Math.abs(vars.timestamp - Date.now() / 1000) < 60, 'timestamp is in Unix seconds');
    assert.equal(typeof vars.memstats, 'object');
    assert.ok(vars.memstats.Alloc !== undefined && vars.memstats.Alloc > 0);
    assert.ok(Array.isArray(vars.cmdline));
    assert.ok(vars.cmdline.every((arg) => typeof arg === 'string'));
    assert.equal(typeof vars.total_requests_received, 'number');
    assert.equal(typeof vars.total_responses_sent, 'number');
    assert.equal(typeof vars.total_processing_time_μs, 'number');
    assert.equal(typeof vars.total_responses_sent_by_status, 'object');
  });

  test('when queries wait for a connection, then WaitCount and WaitDuration (ns) grow', async () => {
    const narrow = await buildMetricsApp(['-db-max-open-conns', '1']);
    const user = await createUser(narrow.db, { permissions: ['movies:read'] });
    const before = (await debugVars(narrow.app)).database;
    assert.equal(before.MaxOpenConnections, 1);
    const lists = await Promise.all(
      Array.from({ length: 10 }, () => get(narrow.app, '/v1/movies', LOOPBACK, user.token)),
    );
    for (const res of lists) assert.equal(res.statusCode, 200);
    const after = (await debugVars(narrow.app)).database;
    assert.ok((after.WaitCount ?? 0) > (before.WaitCount ?? 0), JSON.stringify(after));
    assert.ok((after.WaitDuration ?? 0) > (before.WaitDuration ?? 0), JSON.stringify(after));
  });

  test('when idle connections outlive -db-max-idle-time, then MaxIdleTimeClosed counts them', async () => {
    const brief = await buildMetricsApp(['-db-max-idle-time', '200ms']);
    assert.equal((await get(brief.app, '/v1/healthcheck', LOOPBACK)).statusCode, 200);
    await brief.db.query('SELECT 1');
    const deadline = Date.now() + 5_000;
    let closed = 0;
    while (closed === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      closed = brief.db.stats.idleTimeClosed;
    }
    assert.ok(closed >= 1, 'an idle connection was closed and counted');
  });

  test('when requests are answered, then the counters grow by status', async () => {
    const before = await debugVars();
    assert.equal((await app.inject({ url: '/v1/nowhere' })).statusCode, 404);
    assert.equal((await app.inject({ url: '/v1/nowhere-else' })).statusCode, 404);
    assert.equal((await app.inject({ url: '/v1/healthcheck' })).statusCode, 200);
    const now = await debugVars();
    const byStatus = (vars: DebugVars, status: string) => vars.total_responses_sent_by_status[status] ?? 0;
    assert.equal(byStatus(now, '404'), byStatus(before, '404') + 2);
    // the healthcheck and the first /debug/vars read
    assert.equal(byStatus(now, '200'), byStatus(before, '200') + 2);
    // three requests, the first read, and this read (counted when it arrives)
    assert.equal(now.total_requests_received, before.total_requests_received + 4);
    assert.equal(now.total_responses_sent, before.total_responses_sent + 4);
    assert.ok(now.total_requests_received >= now.total_responses_sent);
    assert.ok(now.total_processing_time_μs >= before.total_processing_time_μs);
    assert.ok(Object.values(now.total_responses_sent_by_status).every((n) => Number.isInteger(n) && n > 0));
    const total = Object.values(now.total_responses_sent_by_status).reduce((a, b) => a + b, 0);
    assert.equal(total, now.total_responses_sent);
  });

  test('when asked from IPv6 or IPv4-mapped loopback, then 200', async () => {
    assert.equal((await get(app, '/debug/vars', '::1')).statusCode, 200);
    assert.equal((await get(app, '/debug/vars', '::ffff:127.0.0.1')).statusCode, 200);
  });

  test('when an anonymous client asks from elsewhere, then 401', async () => {
    const res = await get(app, '/debug/vars', REMOTE);
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: MESSAGES.authenticationRequired });
  });

  test('when a remote client forges X-Forwarded-For: 127.0.0.1, then still 401', async () => {
    const res = await get(app, '/debug/vars', REMOTE, undefined, { 'x-forwarded-for': '127.0.0.1' });
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: MESSAGES.authenticationRequired });
  });

  test('when a remote user lacks metrics:view, then 403', async () => {
    const res = await get(app, '/debug/vars', REMOTE, reader.token);
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json(), { error: MESSAGES.notPermitted });
  });

  test('when a remote user holds metrics:view but is not activated, then 403', async () => {
    const res = await get(app, '/debug/vars', REMOTE, inactiveViewer.token);
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json(), { error: MESSAGES.inactive });
  });

  test('when a remote client sends a bogus token, then 401 invalid token', async () => {
    const res = await get(app, '/debug/vars', REMOTE, 'XXXXXXXXXXXXXXXXXXXXXXXXXX');
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: MESSAGES.invalidToken });
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  });

  test('when a remote user holds metrics:view, then 200', async () => {
    const res = await get(app, '/debug/vars', REMOTE, viewer.token);
    assert.equal(res.statusCode, 200);
    assert.equal(typeof (res.json() as DebugVars).total_requests_received, 'number');
  });

  test('when another method is used, then 405 with Allow', async () => {
    const res = await app.inject({ method: 'POST', url: '/debug/vars', remoteAddress: LOOPBACK });
    assert.equal(res.statusCode, 405);
    assert.equal(res.headers.allow, 'GET, OPTIONS');
  });
});

describe('GET /metrics', () => {
  test('when asked from loopback, then 200 Prometheus text with the service metrics', async () => {
    assert.equal((await app.inject({ url: '/v1/healthcheck' })).statusCode, 200);
    assert.equal((await app.inject({ url: '/v1/nowhere' })).statusCode, 404);
    const res = await get(app, '/metrics', LOOPBACK);
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const text = res.body;
    const buckets = text
      .split('\n')
      .filter((l) => l.startsWith('greenlight_http_request_duration_seconds_bucket{'));
    assert.ok(
      buckets.some(
        (l) =>
          l.includes('route="/v1/healthcheck"') && l.includes('status="200"') && l.includes('method="GET"'),
      ),
      'a bucket for the healthcheck 200',
    );
    assert.ok(
      buckets.some((l) => l.includes('status="404"') && /route="[^"]*"/.test(l)),
      'a bucket for the 404',
    );
    assert.match(text, /^# TYPE greenlight_http_request_duration_seconds histogram$/m);
    assert.match(
      text,
      /^greenlight_http_request_duration_seconds_count\{[^}]*route="\/v1\/healthcheck"[^}]*\} [1-9]/m,
    );
    for (const state of ['open', 'idle', 'in_use', 'waiting']) {
      assert.match(text, new RegExp(`^greenlight_db_pool_connections\\{state="${state}"\\} \\d+$`, 'm'));
    }
    assert.match(text, /^nodejs_eventloop_lag_seconds [\d.e+-]+$/m);
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds [\d.e+-]+$/m);
    for (const state of ['queued', 'active', 'deferred']) {
      assert.match(
        text,
        new RegExp(`^greenlight_job_queue_depth\\{queue="${EMAIL_QUEUE}",state="${state}"\\} \\d+$`, 'm'),
      );
    }
    assert.match(text, /^# TYPE greenlight_rate_limit_rejections_total counter$/m);
    assert.equal(sample(text, 'greenlight_rate_limit_rejections_total'), 0);
    assert.match(text, /^# TYPE greenlight_job_failures_total counter$/m);
  });

  test('when a request is rate limited, then the rejection counter counts it', async () => {
    const { app: limited } = await buildMetricsApp([
      '-limiter-enabled=true',
      '-limiter-rps',
      '0.01',
      '-limiter-burst',
      '1',
    ]);
    assert.equal((await get(limited, '/v1/healthcheck', '192.0.2.50')).statusCode, 200);
    assert.equal((await get(limited, '/v1/healthcheck', '192.0.2.50')).statusCode, 429);
    assert.equal((await get(limited, '/v1/healthcheck', '192.0.2.50')).statusCode, 429);
    const text = await prometheus(limited);
    const rejections = sample(text, 'greenlight_rate_limit_rejections_total');
    assert.ok(rejections !== undefined && rejections >= 2, `rejections: ${rejections}`);
    assert.match(text, /^greenlight_http_request_duration_seconds_bucket\{[^}]*status="429"[^}]*\} \d+$/m);
    // Loopback is limited too: a second read comes from another loopback address.
    const res = await get(limited, '/debug/vars', '127.0.0.2');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((res.json() as DebugVars).total_responses_sent_by_status['429'], 2);
  });

  test('when an anonymous client asks from elsewhere, then 401', async () => {
    const res = await get(app, '/metrics', REMOTE);
    assert.equal(res.statusCode, 401);
    assert.deepEqual(res.json(), { error: MESSAGES.authenticationRequired });
  });

  test('when a remote user lacks metrics:view, then 403', async () => {
    const res = await get(app, '/metrics', REMOTE, reader.token);
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json(), { error: MESSAGES.notPermitted });
  });

  test('when a remote user holds metrics:view, then 200', async () => {
    const res = await get(app, '/metrics', REMOTE, viewer.token);
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /greenlight_http_request_duration_seconds_bucket/);
  });
});

describe('-metrics-loopback=false', async () => {
  const { app: strict } = await buildMetricsApp(['-metrics-loopback=false']);

  test('when an anonymous loopback client asks, then 401 on both endpoints', async () => {
    for (const url of ['/debug/vars', '/metrics']) {
      const res = await get(strict, url, LOOPBACK);
      assert.equal(res.statusCode, 401, url);
      assert.deepEqual(res.json(), { error: MESSAGES.authenticationRequired });
    }
  });

  test('when a loopback user lacks metrics:view, then 403', async () => {
    const res = await get(strict, '/debug/vars', LOOPBACK, reader.token);
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json(), { error: MESSAGES.notPermitted });
  });

  test('when a loopback user holds metrics:view, then 200 on both endpoints', async () => {
    assert.equal((await get(strict, '/debug/vars', LOOPBACK, viewer.token)).statusCode, 200);
    assert.equal((await get(strict, '/metrics', LOOPBACK, viewer.token)).statusCode, 200);
  });
});
