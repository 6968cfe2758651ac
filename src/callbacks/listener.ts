// The callback service as a unit: its own pools, the processing and sweeping, and its own
// HTTP listener (a Fastify instance apart from the /v1 API, on -callbacks-addr). Started by
// `greenlight serve` next to the API, or alone by `greenlight callbacks`.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import prom from 'prom-client';
import type { Config } from '../config.ts';
import { createPool } from '../platform/db.ts';
import { BadRequestError, errorResponse, NotFoundError } from '../platform/errors.ts';
import { requestId, sendError, withMethodFallbacks } from '../platform/http.ts';
import { clientErrorHandler, serverFactory, workerListenOptions } from '../platform/http-server.ts';
import { MAX_BODY_BYTES } from '../platform/json-body.ts';
import type { Logger } from '../platform/logger.ts';
import { registerOpenApi } from '../platform/openapi.ts';
import { CALLBACKS_DOCUMENT, callbackRoutes } from './callbacks.routes.ts';
import { CallbackService, type CallbackServiceOptions } from './callbacks.ts';

export function buildCallbackListener(
  service: CallbackService,
  registry: prom.Registry,
  logger: Logger,
  config: Config,
): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestId,
    bodyLimit: MAX_BODY_BYTES,
    exposeHeadRoutes: false,
    // The API's connection policy (read timeouts, caps per address, a drain that answers every
    // request received). The task's client posts every 5 s: idle connections stay open well
    // past that, so each client keeps reusing one connection.
    serverFactory: serverFactory(config, {}, 65_000),
    forceCloseConnections: false,
    return503OnClosing: false,
    clientErrorHandler: clientErrorHandler({}),
    frameworkErrors: (err, request, reply: FastifyReply) => {
      const response = errorResponse(err);
      reply.code(response.status).header('x-request-id', request.id).send({ error: response.error });
    },
  }) as unknown as FastifyInstance;

  // Senders post JSON with whatever Content-Type they like; the route decodes the bytes.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  // Fastify's callback, not a promise: neither hook ever waits, and every answer passes both.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    // Fastify would refuse a malformed one (`x`, `/`) with 415 before any parser runs.
    delete request.raw.headers['content-type'];
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    if (request.routeOptions.url === '/callback') {
      service.metrics.requestDuration.observe({ status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    }
    done();
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    // Schema checks (the /objects query) are the client's mistake too.
    const status = sendError(err.validation ? new BadRequestError(err.message) : err, request, reply);
    if (status === 400 && request.routeOptions.url === '/callback') service.rejected();
  });
  app.setNotFoundHandler(async () => {
    throw new NotFoundError();
  });
  // Routes are registered after the document's generator, which records each as it is added.
  registerOpenApi(app, CALLBACKS_DOCUMENT);
  app.register(withMethodFallbacks((routes) => callbackRoutes(routes, service, registry)));
  return app;
}

export type RunningCallbacks = Readonly<{
  service: CallbackService;
  // host:port the listener is bound to, or null when -callbacks-addr is empty.
  address: string | null;
  stop: () => Promise<void>;
}>;

const CONNECTIONS = 4;

export async function startCallbacks(
  options: Readonly<{
    config: Config;
    dsn: string;
    logger: Logger;
    registry?: prom.Registry;
    tuning?: Pick<CallbackServiceOptions, 'upstream' | 'sweepIntervalMs' | 'pollIntervalMs'>;
  }>,
): Promise<RunningCallbacks> {
  const { config, dsn, logger } = options;
  const registry = options.registry ?? new prom.Registry();
  // Four connections each: an intake commit takes a millisecond or two and carries every
  // callback that arrived while the others were in flight (intake.ts), so four carry
  // thousands of callbacks a second, and a cluster of one worker per core stays within
  // PostgreSQL's default 100 connections.
  const pool = (name: string, sessionOptions?: string) =>
    createPool({
      ...config.db,
      dsn,
      maxOpenConns: CONNECTIONS,
      applicationName: `greenlight-callbacks-${name}`,
      sessionOptions,
    });
  const intakeDb = pool('intake');
  // Only the intake's commit must reach the disk before we answer. What workers write
  // (claims, results, deletions, sweeps) may be lost by a crash of PostgreSQL itself: the
  // WAL loses a suffix, so the callbacks it had deleted reappear and are processed again,
  // and the upsert never moves last_seen backwards. Not waiting for those flushes leaves
  // the disk to the intake's commits.
  const workDb = pool('work', '-c synchronous_commit=off');
  const service = new CallbackService({
    config: config.callbacks,
    intakeDb,
    intakeConnections: CONNECTIONS,
    workDb,
    logger,
    registry,
    ...options.tuning,
  });
  const listen = config.callbacks.listen;
  const app = listen ? buildCallbackListener(service, registry, logger, config) : null;
  const closePools = () => Promise.all([intakeDb.end(), workDb.end()]);
  let address: string | null = null;
  if (app && listen) {
    try {
      await app.listen({ host: listen.host, port: listen.port, ...workerListenOptions(listen.port, true) });
    } catch (err) {
      await closePools();
      throw err;
    }
    const bound = app.server.address();
    address = typeof bound === 'object' && bound ? `${bound.address}:${bound.port}` : String(bound);
  }
  service.start();
  // `upstream` is logged without its credentials (the logger's serializer, logger.ts).
  logger.info({ addr: address, upstream: config.callbacks.upstream }, 'callback service started');
  return {
    service,
    address,
    // Stops taking callbacks first, then finishes or hands back the claimed ones.
    stop: async () => {
      await app?.close();
      await service.stop(config.shutdownTimeoutMs);
      await closePools();
    },
  };
}

// The listener's OpenAPI document without a database (`greenlight openapi callbacks`): its
// pools are never connected, since generating the document runs no request.
export async function callbackOpenApiDocument(config: Config, logger: Logger): Promise<unknown> {
  const nowhere = createPool({ ...config.db, dsn: 'postgres://greenlight@127.0.0.1:1/greenlight' });
  const service = new CallbackService({
    config: config.callbacks,
    intakeDb: nowhere,
    intakeConnections: 1,
    workDb: nowhere,
    logger,
    registry: new prom.Registry(),
  });
  const app = buildCallbackListener(service, new prom.Registry(), logger, config);
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
    await nowhere.end();
  }
}
