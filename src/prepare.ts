// What `serve` does to the database before it serves: create the application database in the
// embedded PostgreSQL, migrate, and seed the demo data in development.
//
// The cluster primary has a short-lived child do it (`-workers N`). The primary lives as long
// as the service and only forks and supervises; the PostgreSQL driver and the migrator would
// stay loaded in it for nothing, about 5 MiB of its RSS (docs/performance.md).
import { spawn } from 'node:child_process';
import { getCompileCacheDir } from 'node:module';
import type { Config } from './config.ts';
import type { DatabaseServer } from './platform/database.ts';
import { ensureDatabase } from './platform/embedded-postgres.ts';
import type { Logger } from './platform/logger.ts';

// Set in the child's environment: its `serve` prepares the database and exits.
export const PREPARE_ONLY = 'GREENLIGHT_PREPARE_ONLY';

export class PreparationError extends Error {}

export function needsPreparation(config: Config, database: DatabaseServer): boolean {
  return config.db.migrate || database.embedded;
}

export async function prepareDatabase(
  config: Config,
  logger: Logger,
  database: DatabaseServer,
): Promise<void> {
  if (database.embedded) await ensureDatabase(database.dsn);
  if (config.db.migrate) {
    const { Migrator } = await import('./platform/migrations.ts');
    const applied = await new Migrator(database.dsn, {
      onStep: (step) => logger.info(step, 'applied migration'),
    }).up();
    logger.info({ applied }, 'database migrations are up to date');
  }
  if (!(config.env === 'development' && database.embedded && config.seedDemoData)) return;
  const [{ createPool }, { DEMO_ACCOUNT, ensureDemoAccount }, { countMovies }, { DEMO_MOVIES, seedMovies }] =
    await Promise.all([
      import('./platform/db.ts'),
      import('./accounts/demo-account.ts'),
      import('./movies/movies.sql.ts'),
      import('./movies/seed.ts'),
    ]);
  const db = createPool({ ...config.db, dsn: database.dsn, maxOpenConns: 1 });
  try {
    if ((await countMovies(db)) === 0)
      logger.info({ movies: await seedMovies(db, DEMO_MOVIES) }, 'seeded demo movies');
    await ensureDemoAccount(db);
    logger.info(
      { email: DEMO_ACCOUNT.email, password: DEMO_ACCOUNT.password },
      'demo account (development only)',
    );
  } finally {
    await db.end();
  }
}

// The same command line in a child, which borrows the primary's embedded PostgreSQL (or uses
// the same -db-dsn), prepares and exits; its log lines and any error go where the primary's do.
export function prepareInChild(): Promise<void> {
  const compileCache = getCompileCacheDir();
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      [PREPARE_ONLY]: '1',
      ...(compileCache ? { NODE_COMPILE_CACHE: compileCache } : {}),
    },
  });
  // A primary that exits during start-up (a signal) takes the child with it.
  const killChild = () => child.kill('SIGKILL');
  process.once('exit', killChild);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new PreparationError(`preparing the database: ${err.message}`)));
    child.once('exit', (code, signal) => {
      process.removeListener('exit', killChild);
      if (code === 0) return resolve();
      reject(
        new PreparationError(
          `preparing the database failed (exit code ${code}${signal ? `, signal ${signal}` : ''}); its error is above`,
        ),
      );
    });
  });
}
