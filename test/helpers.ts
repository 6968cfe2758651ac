// Test helpers: a fresh database per test file, the real app on it, captured logs.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { buildApp } from '../src/app.ts';
import { buildConfig, type Config, readSettings } from '../src/config.ts';
import { createPool, type Db } from '../src/platform/db.ts';
import { createLogger, type Logger } from '../src/platform/logger.ts';

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

// A new database for the calling test file, dropped when the file's tests end.
// `template: false` gives an empty database (for migration tests).
export async function createTestDatabase(options: { template?: boolean } = {}): Promise<string> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  const template = options.template === false ? 'template0' : TEMPLATE_DATABASE;
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  after(() => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  return dsnFor(name);
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

export function testConfig(dsn: string, flags: string[] = []): Config {
  return buildConfig(
    readSettings(['-env', 'development', '-db-dsn', dsn, '-limiter-enabled=false', ...flags], {}),
  );
}

export type TestApp = { app: FastifyInstance; db: Db; config: Config; lines: LogLine[]; dsn: string };

// The real application on its own database; closed after the file's tests.
// `configure` may add routes (e.g. one that throws) before the app is ready.
export async function buildTestApp(
  options: { flags?: string[]; dsn?: string; configure?: (app: FastifyInstance, db: Db) => void } = {},
): Promise<TestApp> {
  const dsn = options.dsn ?? (await createTestDatabase());
  const config = testConfig(dsn, options.flags);
  const db = createPool({ ...config.db, dsn });
  const { logger, lines } = captureLogger();
  const app = buildApp({ config, db, logger });
  options.configure?.(app, db);
  await app.ready();
  after(async () => {
    await app.close();
    await db.end();
  });
  return { app, db, config, lines, dsn };
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
export async function createMovie(app: FastifyInstance, fields: Partial<Omit<Movie, 'id' | 'version'>> = {}) {
  titleCounter++;
  const res = await app.inject({
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
