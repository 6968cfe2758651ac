// Where the database comes from: the server named by -db-dsn, or the embedded PostgreSQL
// kept under -data-dir. Shared by `serve` and every CLI command.
import type { Config } from '../config.ts';
import { startEmbeddedPostgres } from './embedded-postgres.ts';
import type { Logger } from './logger.ts';

export type DatabaseServer = Readonly<{ dsn: string; embedded: boolean; stop: () => Promise<void> }>;

// `createDatabase: false`: the caller creates the application database in the embedded server
// itself (`serve`, src/prepare.ts).
export async function openDatabaseServer(
  config: Config,
  logger: Logger,
  { createDatabase = true } = {},
): Promise<DatabaseServer> {
  if (config.db.dsn !== '') return { dsn: config.db.dsn, embedded: false, stop: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedDbPort,
    logger,
    createDatabase,
  });
  return { dsn: server.dsn, embedded: true, stop: server.stop };
}
