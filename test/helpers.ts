// Test helpers: a fresh database per test file, the real app on it, captured logs.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { startEmailWorker } from '../src/accounts/email.worker.ts';
import { IdentityCache, listenForIdentityChanges } from '../src/accounts/identity-cache.ts';
import { grantPermissions } from '../src/accounts/permissions.sql.ts';
import { insertToken } from '../src/accounts/tokens.sql.ts';
import { generateToken, SCOPES } from '../src/accounts/tokens.ts';
import { insertUser } from '../src/accounts/users.sql.ts';
import { buildApp, createMetrics } from '../src/app.ts';
import { createMailer, QUEUES } from '../src/background.ts';
import { buildConfig, type Config, readSettings } from '../src/config.ts';
import { createPool, type Db, type Queryable } from '../src/platform/db.ts';
import { type Jobs, startJobs } from '../src/platform/jobs.ts';
import { createLogger, type Logger } from '../src/platform/logger.ts';
import type { Metrics } from '../src/platform/metrics.ts';
import { connectRedis } from '../src/platform/redis.ts';
import type { Topic } from '../src/realtime/topics.ts';
import { listenForSettingChanges, RuntimeSettings } from '../src/settings/runtime.ts';

const TEMPLATE_DATABASE = 'greenlight_template';

function serverDsn(): string {
  const dsn = process.env.GREENLIGHT_TEST_DSN;
  if (!dsn) throw new Error('GREENLIGHT_TEST_DSN is not set: run tests with `npm test` (global setup)');
  return dsn;
}

export function dsnFor(database: string): string {
  return serverDsn().replace(/\/[^/]+$/, `/${database}`);
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverDsn() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

// A new database for the calling test file, dropped when the file's tests end (or, with
// `drop: false`, by the caller with dropTestDatabase). `template: false` gives an empty
// database (for migration tests).
export async function createTestDatabase(
  options: { template?: boolean; drop?: boolean } = {},
): Promise<string> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  const template = options.template === false ? 'template0' : TEMPLATE_DATABASE;
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  const dsn = dsnFor(name);
  if (options.drop !== false) after(() => dropTestDatabase(dsn));
  return dsn;
}

export function dropTestDatabase(dsn: string): Promise<unknown> {
  const name = new URL(dsn).pathname.slice(1);
  return admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

// A logger whose lines are kept in memory so tests can assert on them.
export function captureLogger(level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger(level, stream), lines };
}

export const TEST_JWT_SECRET = 'test-secret-of-thirty-two-bytes!!';

export function testConfig(dsn: string, flags: string[] = []): Config {
  return buildConfig(
    readSettings(
      [
        '-env',
        'development',
        '-db-dsn',
        dsn,
        '-limiter-enabled=false',
        '-jwt-secret',
        TEST_JWT_SECRET,
        ...flags,
      ],
      {},
    ),
  );
}

export type Inject = (options: InjectOptions | string) => Promise<LightMyRequestResponse>;

export type TestApp = {
  app: FastifyInstance;
  identityCache?: IdentityCache;
  settings: RuntimeSettings;
  db: Db;
  config: Config;
  lines: LogLine[];
  dsn: string;
  // the app's job queue and metrics
  jobs: Jobs;
  metrics: Metrics;
  // app.inject as an activated user holding movies:read and movies:write
  api: Inject;
  token: string;
};

// bcrypt("pa55word", cost 4): test users skip the cost-12 hashing they do not test.
export const TEST_PASSWORD = 'pa55word';
const TEST_PASSWORD_HASH = Buffer.from('$2a$04$bwszKMrdQAQcpDN4LrsW7.lv7jPbzXAJCeHcTG.VY01V5Y1MaoxIK');

let userCounter = 0;

// A user made straight in the database, with an authentication token.
export async function createUser(
  db: Db,
  options: { activated?: boolean; permissions?: string[]; email?: string } = {},
): Promise<{ id: number; email: string; token: string }> {
  userCounter++;
  const email = options.email ?? `user${userCounter}-${randomBytes(3).toString('hex')}@example.com`;
  const user = await insertUser(db, {
    name: `User ${userCounter}`,
    email,
    passwordHash: TEST_PASSWORD_HASH,
    activated: options.activated ?? true,
  });
  if (options.permissions?.length) await grantPermissions(db, user.id, options.permissions);
  const token = generateToken(user.id, SCOPES.authentication);
  await insertToken(db, token);
  return { id: user.id, email, token: token.plaintext };
}

// A password reset as its owner makes it: a reset token (the one the mail carries), then
// PUT /v1/users/password with the new password.
export async function resetPassword(
  app: FastifyInstance,
  db: Queryable,
  userId: number,
  password: string,
): Promise<LightMyRequestResponse> {
  const reset = generateToken(userId, SCOPES.passwordReset);
  await insertToken(db, reset);
  return app.inject({
    method: 'PUT',
    url: '/v1/users/password',
    payload: { password, token: reset.plaintext },
  });
}

export function withToken(app: FastifyInstance, token: string): Inject {
  return (options) => {
    const opts = typeof options === 'string' ? { url: options } : options;
    return app.inject({ ...opts, headers: { authorization: `Bearer ${token}`, ...opts.headers } });
  };
}

// The real application on its own database; closed after the file's tests.
// `configure` may add routes (e.g. one that throws) before the app is ready; `workers`
// starts the background workers (mail delivery) as the server does.
export async function buildTestApp(
  options: {
    flags?: string[];
    dsn?: string;
    workers?: boolean;
    // an identity cache kept fresh by LISTEN/NOTIFY, as the server runs
    identityCache?: boolean;
    // connects to this Redis as `serve -redis-url` does
    redisUrl?: string;
    // runtime settings kept equal to the settings table by LISTEN/NOTIFY, as the server runs
    settings?: boolean;
    configure?: (app: FastifyInstance, db: Db) => void;
  } = {},
): Promise<TestApp> {
  // Its own database is dropped after the app closed: dropped first (after-hooks run in the
  // order they were added), it would cut connections the app still uses, such as a stalled
  // import's transaction, and their errors would fail the test.
  const ownDatabase = options.dsn === undefined;
  const dsn = options.dsn ?? (await createTestDatabase({ drop: false }));
  const config = testConfig(dsn, options.flags);
  const db = createPool({ ...config.db, dsn });
  const { logger, lines } = captureLogger();
  const jobs = await startJobs(dsn, logger, QUEUES);
  const metrics = createMetrics(config, db, jobs);
  const identityCache = options.identityCache ? new IdentityCache() : undefined;
  const redis = options.redisUrl ? await connectRedis(options.redisUrl, logger) : undefined;
  const stopListening = identityCache
    ? await listenForIdentityChanges(dsn, identityCache, logger, redis && { redis, db })
    : async () => {};
  const settings = new RuntimeSettings(config, logger);
  const stopSettings = options.settings
    ? await listenForSettingChanges(dsn, settings, logger)
    : async () => {};
  const app = buildApp({ config, db, logger, jobs, metrics, identityCache, redis, settings });
  options.configure?.(app, db);
  await app.ready();
  const mailer = createMailer(config, logger);
  if (options.workers) await startEmailWorker(jobs, mailer, logger, metrics);
  after(async () => {
    await app.close();
    await stopListening();
    await redis?.close();
    await stopSettings();
    await jobs.stop({ graceful: true, wait: true, timeout: 5000 });
    mailer.close();
    await db.end();
    if (ownDatabase) await dropTestDatabase(dsn);
  });
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const api = withToken(app, token);
  return { app, db, config, lines, dsn, jobs, metrics, api, token, identityCache, settings };
}

export type Movie = {
  id: number;
  title: string;
  year: number;
  runtime: string;
  genres: string[];
  version: number;
};

let titleCounter = 0;
export async function createMovie(api: Inject, fields: Partial<Omit<Movie, 'id' | 'version'>> = {}) {
  titleCounter++;
  const res = await api({
    method: 'POST',
    url: '/v1/movies',
    payload: {
      title: `Test Movie ${titleCounter}`,
      year: 2001,
      runtime: '100 mins',
      genres: ['drama'],
      ...fields,
    },
  });
  if (res.statusCode !== 201) throw new Error(`createMovie: ${res.statusCode} ${res.body}`);
  return (res.json() as { movie: Movie }).movie;
}

// Pruning deletes only events whose transactions had all ended before the cluster's oldest
// running transaction began, another test file's included (realtime/events.sql.ts): waits
// until every event of `topic` up to `upTo` is past that horizon, so that a prune takes them all.
export async function untilPrunable(db: Queryable, topic: Topic, upTo: number): Promise<void> {
  await waitFor(`the events up to ${upTo} to be prunable`, async () => {
    const { rows } = await db.query<{ prunable: boolean }>(
      `SELECT coalesce((SELECT max(xid) FROM ${topic.outbox.table} WHERE id <= $1)
                       < pg_snapshot_xmin(pg_current_snapshot()), true) AS prunable`,
      [upTo],
    );
    return rows[0]?.prunable === true;
  });
}

// Polls `check` until it gives a value (not undefined or false), failing after `timeoutMs`.
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
