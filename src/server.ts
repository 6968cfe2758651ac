// `greenlight serve`: open the database, migrate, listen, and shut down gracefully.
import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import { superviseWorkers } from './cluster.ts';
import { type Config, checkServeConfig } from './config.ts';
import type { GrpcListener } from './grpc/listener.ts';
import { effectiveMaxConnections, FD_RESERVE, openFilesLimit } from './platform/connection-caps.ts';
import { type DatabaseServer, openDatabaseServer } from './platform/database.ts';
import type { GreenlightServer } from './platform/http-server.ts';
import type { Logger } from './platform/logger.ts';
import type { Metrics } from './platform/metrics.ts';
import { ensurePortFree, explainListenError } from './platform/ports.ts';
import { onStopSignals } from './platform/signals.ts';
import { stopTracing } from './platform/tracing.ts';
import { needsPreparation, PREPARE_ONLY, prepareDatabase, prepareInChild } from './prepare.ts';
import type { RuntimeSettings } from './settings/runtime.ts';

export async function serve(givenConfig: Config, logger: Logger): Promise<void> {
  checkServeConfig(givenConfig);
  // Until serving begins there is nothing to drain: a signal exits at once, and the embedded
  // PostgreSQL (in a process group of its own, out of reach of a terminal's Ctrl-C) is
  // stopped on the way out.
  const exitNow = (signal: NodeJS.Signals) => {
    logger.warn({ signal }, 'signal during start-up: exiting');
    logger.flush();
    process.exit(1);
  };
  onStopSignals({ first: exitNow, second: exitNow });
  const preparingOnly = process.env[PREPARE_ONLY] === '1';
  const supervising = cluster.isPrimary && givenConfig.workers > 1 && !preparingOnly;
  // A worker's ports were checked by its primary; its siblings hold them now.
  if (cluster.isPrimary && !preparingOnly) await ensurePortsFree(givenConfig);
  // The preparing child signs nothing: no key to read.
  const config = preparingOnly ? givenConfig : await withJwtSecret(givenConfig);
  const database = await openDatabaseServer(config, logger, { createDatabase: false });
  try {
    if (needsPreparation(config, database)) {
      await (supervising ? prepareInChild() : prepareDatabase(config, logger, database));
    }
  } catch (err) {
    await database.stop();
    throw err;
  }
  // The preparing child is done: its queries had no parent span (pg's instrumentation
  // requires one), so no span waits to be exported.
  if (preparingOnly) return database.stop();
  // A cluster worker is started with the primary's -db-dsn, so it never owns a database.
  if (supervising) return superviseWorkers(config, logger, database);
  return serveHttp(config, logger, database);
}

async function ensurePortsFree(config: Config): Promise<void> {
  await ensurePortFree(config.host, config.port, '-port');
  const grpc = config.grpc.listen;
  if (grpc) await ensurePortFree(grpc.host, grpc.port, '-grpc-addr');
  const callbacks = config.callbacks.listen;
  if (config.callbacks.enabled && callbacks) {
    await ensurePortFree(callbacks.host, callbacks.port, '-callbacks-addr');
  }
}

// Without -jwt-secret (never in production: config refuses it) the secret lives in the data
// directory; the primary creates it before any worker starts.
// EdDSA: the first key is made here too, before any worker.
// The key module (and node:crypto with it) is loaded only when there is a key to make or
// read: a production primary, given -jwt-secret, never needs it.
async function withJwtSecret(config: Config): Promise<Config> {
  const { auth } = config;
  const eddsa = auth.methods.includes('jwt') && auth.jwtAlgorithm === 'EdDSA';
  const secretFromDataDir =
    auth.jwtSecret === '' && auth.methods.includes('jwt') && auth.jwtAlgorithm === 'HS256';
  if (!eddsa && !secretFromDataDir) return config;
  const { ensureKeyDir, jwtSecretFromDataDir } = await import('./auth/jwt-keys.ts');
  if (eddsa) ensureKeyDir(auth.jwtKeyDir);
  if (!secretFromDataDir) return config;
  return { ...config, auth: { ...config.auth, jwtSecret: jwtSecretFromDataDir(config.dataDir) } };
}

// One serving process: HTTP, pool and background work, with graceful shutdown. Its modules
// are imported here, not by the cluster primary, which only supervises; those of features
// that are off (Redis, the callback service) are not imported at all.
async function serveHttp(config: Config, logger: Logger, database: DatabaseServer): Promise<void> {
  const { workerListenOptions } = await import('./platform/http-server.ts');
  const { app, metrics, settings, release } = await startServices(config, logger, database);
  const callbacks = config.callbacks.enabled
    ? await startCallbackService(config, database.dsn, logger, metrics, settings)
    : undefined;

  let shuttingDown = false;
  let grpc: GrpcListener | undefined;
  const server = app.server as GreenlightServer;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down server');
    // Like Go's Shutdown, and before anything else: the listener closes, then every response
    // says `Connection: close` and closes its connection, so a keep-alive client neither
    // holds the process until the grace period ends nor reconnects into a closing listener.
    server.drain();
    // gRPC the same way: health turns NOT_SERVING, HTTP/2 connections get GOAWAY.
    app.grpc.drain();
    grpc?.drain();
    // In-flight requests get the grace period; after that, their connections are cut.
    const deadline = setTimeout(() => {
      logger.warn('grace period over: closing remaining connections');
      app.server.closeAllConnections();
      grpc?.destroy();
    }, config.shutdownTimeoutMs);
    try {
      // Ends the open change streams, gRPC's too.
      await app.close();
      await grpc?.closed;
      await callbacks?.stop();
      clearTimeout(deadline);
      logger.info('completing background tasks');
      await release();
      await stopTracing();
      logger.info('stopped server');
      logger.flush();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      logger.flush();
      process.exit(1);
    }
  };
  // Only a second *signal* means "now": in a cluster the primary also asks by message, and a
  // Ctrl-C reaching the whole process group must not count twice.
  onStopSignals({
    first: (signal) => void shutdown(signal),
    second: (signal) => {
      logger.warn({ signal }, 'second signal: exiting at once');
      logger.flush();
      process.exit(1);
    },
  });
  // The primary first has every worker stop accepting, then asks each to shut down (cluster.ts).
  process.on('message', (message) => {
    if (message === 'stop-accepting') {
      server.stopAccepting();
      process.send?.('accepting-stopped');
    }
    if (message === 'shutdown') void shutdown('SIGTERM');
  });

  try {
    await app.listen({ port: config.port, host: config.host, ...workerListenOptions(config.port) });
  } catch (err) {
    await release();
    throw explainListenError(err, config.host, config.port, '-port');
  }
  logger.info({ addr: listeningAddress(server), env: config.env }, 'starting server');
  logConnectionHeadroom(config, server, logger);
  grpc = await startGrpc(config, app, logger, release);
}

function listeningAddress(server: GreenlightServer): string | null {
  const address = server.address();
  return typeof address === 'object' && address ? `${address.address}:${address.port}` : address;
}

// The gRPC listener, when -grpc-addr is set; a failure to listen stops the process as -port's does.
async function startGrpc(
  config: Config,
  app: FastifyInstance,
  logger: Logger,
  release: () => Promise<void>,
): Promise<GrpcListener | undefined> {
  if (!config.grpc.listen) return undefined;
  let grpc: GrpcListener;
  try {
    const { listenGrpc } = await import('./grpc/listener.ts');
    grpc = await listenGrpc(app.grpc.handle, config);
  } catch (err) {
    await app.close();
    await release();
    throw err;
  }
  const { host } = config.grpc.listen;
  logger.info({ addr: `${host}:${grpc.port}`, tls: config.grpc.tls !== null }, 'starting gRPC listener');
  return grpc;
}

// Everything the API needs, started in order, up to the app and the job workers; `release`
// stops all but the app, which the caller closes first.
async function startServices(config: Config, logger: Logger, database: DatabaseServer) {
  const [
    { buildApp, createMetrics },
    { startBackground },
    { IdentityCache, listenForIdentityChanges },
    { listenForSettingChanges, RuntimeSettings },
    { createPool },
  ] = await Promise.all([
    import('./app.ts'),
    import('./background.ts'),
    import('./accounts/identity-cache.ts'),
    import('./settings/runtime.ts'),
    import('./platform/db.ts'),
  ]);
  const db = createPool({ ...config.db, dsn: database.dsn });
  db.on('error', (err) => logger.warn({ err }, 'idle database connection failed'));
  const background = await startBackground(config, database.dsn, logger);
  const metrics = createMetrics(config, db, background.jobs);
  const identityCache = new IdentityCache();
  const redis = config.redisUrl
    ? await (await import('./platform/redis.ts')).connectRedis(config.redisUrl, logger)
    : undefined;
  const stopListening = await listenForIdentityChanges(
    database.dsn,
    identityCache,
    logger,
    redis && { redis, db },
  );
  const settings = new RuntimeSettings(config, logger);
  const stopSettings = await listenForSettingChanges(database.dsn, settings, logger);
  const app = buildApp({
    config,
    db,
    logger,
    jobs: background.jobs,
    metrics,
    identityCache,
    redis,
    settings,
  });
  await background.startWorkers(db, metrics);
  const release = async () => {
    await background.stop();
    await stopListening();
    await redis?.close();
    await stopSettings();
    await db.end();
    await database.stop();
  };
  return { app, metrics, settings, release };
}

// The callback service, tuned by the runtime settings now and whenever they change.
async function startCallbackService(
  config: Config,
  dsn: string,
  logger: Logger,
  metrics: Metrics,
  settings: RuntimeSettings,
) {
  const callbacks = await (await import('./callbacks/listener.ts')).startCallbacks({
    config,
    dsn,
    logger,
    registry: metrics.registry,
  });
  const service = callbacks.service;
  service.retune({
    concurrency: settings.get('callbacks-concurrency') as number,
    ttlMs: settings.get('callbacks-ttl') as number,
  });
  settings.onChange((name, value) => {
    if (name === 'callbacks-concurrency') service.retune({ concurrency: value as number });
    if (name === 'callbacks-ttl') service.retune({ ttlMs: value as number });
  });
  return callbacks;
}

// Every client connection is a file descriptor; running out of them refuses everyone, the
// database and the job queue included.
// The caps hold for the instance; in a cluster each worker enforces its share, and says so.
function logConnectionHeadroom(config: Config, server: GreenlightServer, logger: Logger): void {
  const limit = openFilesLimit();
  const { caps } = server;
  const workers = cluster.isWorker ? config.workers : 1;
  const headroom = {
    open_files_limit: limit ?? 'unknown',
    max_connections:
      config.http.maxConnections > 0
        ? config.http.maxConnections
        : effectiveMaxConnections(0, limit) * workers,
    max_connections_per_ip: config.http.maxConnectionsPerIp,
    ...(cluster.isWorker && {
      workers,
      worker_max_connections: caps.maxConnections,
      worker_max_connections_per_ip: caps.maxConnectionsPerAddress,
    }),
  };
  if (limit !== undefined && caps.maxConnections + FD_RESERVE > limit) {
    logger.warn(
      headroom,
      `-max-connections leaves fewer than ${FD_RESERVE} file descriptors for the database and files; raise the open-files limit (ulimit -n) or lower -max-connections`,
    );
  } else {
    logger.info(headroom, 'connection limits');
  }
}
