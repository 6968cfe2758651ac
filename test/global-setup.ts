// Runs once per `npm test`: one embedded PostgreSQL for the whole run and a migrated
// template database that every test file clones (CREATE DATABASE ... TEMPLATE), so each
// file gets its own database in milliseconds and no test shares data with another.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { QUEUES } from '../src/background.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../src/platform/embedded-postgres.ts';
import { startJobs } from '../src/platform/jobs.ts';
import { createLogger } from '../src/platform/logger.ts';
import { Migrator } from '../src/platform/migrations.ts';
import { freePort } from './ports.ts';

export const TEMPLATE_DATABASE = 'greenlight_template';

let server: EmbeddedPostgres | undefined;
let dataDir: string | undefined;

export async function globalSetup(): Promise<void> {
  // Every test file and every server a test spawns is a new Node process compiling the same
  // modules (about 150 per run); V8's code cache, kept between runs, saves about a third of
  // each one's start-up CPU. Node checks each entry against the source, so a stale one is unused.
  process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), 'greenlight-test-compile-cache');
  dataDir = mkdtempSync(join(tmpdir(), 'greenlight-test-'));
  server = await startEmbeddedPostgres({
    dataDir,
    port: await freePort(),
    logger: createLogger('warn'),
    // Tests may lose data on a crash of the machine; the service itself never runs like this.
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
  });
  const admin = new pg.Client({ connectionString: server.dsn });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  await admin.end();
  const templateDsn = server.dsn.replace(/\/greenlight$/, `/${TEMPLATE_DATABASE}`);
  await new Migrator(templateDsn).up();
  // The job queue's own schema and queues, so clones need not create them.
  const jobs = await startJobs(templateDsn, createLogger('warn'), QUEUES);
  await jobs.stop({ graceful: false, wait: true });
  process.env.GREENLIGHT_TEST_DSN = server.dsn;
}

export async function globalTeardown(): Promise<void> {
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
