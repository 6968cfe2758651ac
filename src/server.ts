// `greenlight serve`: open the database, migrate, listen, and shut down gracefully.
import { buildApp } from './app.ts';
import type { Config } from './config.ts';
import { countMovies } from './movies/movies.sql.ts';
import { DEMO_MOVIES, seedMovies } from './movies/seed.ts';
import { openDatabaseServer } from './platform/database.ts';
import { createPool } from './platform/db.ts';
import type { Logger } from './platform/logger.ts';
import { Migrator } from './platform/migrations.ts';

export async function serve(config: Config, logger: Logger): Promise<void> {
  const database = await openDatabaseServer(config, logger);
  try {
    if (config.db.migrate) {
      const applied = await new Migrator(database.dsn, {
        onStep: (step) => logger.info(step, 'applied migration'),
      }).up();
      logger.info({ applied }, 'database migrations are up to date');
    }
  } catch (err) {
    await database.stop();
    throw err;
  }

  const db = createPool({ ...config.db, dsn: database.dsn });
  db.on('error', (err) => logger.warn({ err }, 'idle database connection failed'));
  if (
    config.env === 'development' &&
    database.embedded &&
    config.seedDemoData &&
    (await countMovies(db)) === 0
  ) {
    logger.info({ movies: await seedMovies(db, DEMO_MOVIES) }, 'seeded demo movies');
  }

  const app = buildApp({ config, db, logger });

  let shuttingDown = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(1);
    }
    shuttingDown = true;
    logger.info({ signal }, 'shutting down server');
    // In-flight requests get the grace period; after that, their connections are cut.
    const deadline = setTimeout(() => {
      logger.warn('grace period over: closing remaining connections');
      app.server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    try {
      await app.close();
      clearTimeout(deadline);
      await db.end();
      await database.stop();
      logger.info('stopped server');
      logger.flush();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      logger.flush();
      process.exit(1);
    }
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await db.end();
    await database.stop();
    throw err;
  }
  const address = app.server.address();
  logger.info(
    {
      addr: typeof address === 'object' && address ? `${address.address}:${address.port}` : address,
      env: config.env,
    },
    'starting server',
  );
}
