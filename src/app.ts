// buildApp: the whole HTTP application, registered in an explicit order. The server and
// the tests both build it here.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { Type } from 'typebox';
import { ACCOUNT_PATHS, accountRoutes } from './accounts/accounts.routes.ts';
import { EMAIL_QUEUE } from './accounts/accounts.ts';
import { authenticationHook, requirePermission } from './accounts/auth.ts';
import type { IdentityCache } from './accounts/identity-cache.ts';
import type { Config } from './config.ts';
import { MOVIE_PATHS, movieRoutes } from './movies/movies.routes.ts';
import { corsHook } from './platform/cors.ts';
import type { Db } from './platform/db.ts';
import { errorResponse, NotFoundError } from './platform/errors.ts';
import { addMethodFallbacks, sendError } from './platform/http.ts';
import type { Jobs } from './platform/jobs.ts';
import { MAX_BODY_BYTES } from './platform/json-body.ts';
import type { Logger } from './platform/logger.ts';
import { isLoopback, Metrics } from './platform/metrics.ts';
import { RateLimiter } from './platform/rate-limit.ts';
import { version } from './version.ts';

export type AppDeps = Readonly<{
  config: Config;
  db: Db;
  logger: Logger;
  jobs: Jobs;
  metrics?: Metrics;
  // Without one every authenticated request queries the database.
  identityCache?: IdentityCache;
}>;

export function createMetrics(config: Config, db: Db, jobs: Jobs): Metrics {
  return new Metrics({ db, maxOpenConns: config.db.maxOpenConns, jobs, queues: [EMAIL_QUEUE] });
}

// A client's X-Request-Id is kept when it looks like an id; anything else is replaced.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

const HealthcheckEnvelope = Type.Object({
  status: Type.String(),
  system_info: Type.Object({ environment: Type.String(), version: Type.String() }),
});

export function buildApp({
  config,
  db,
  logger,
  jobs,
  metrics = createMetrics(config, db, jobs),
  identityCache,
}: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // One log line a request, written by our onResponse hook, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestId,
    trustProxy: config.trustedProxies.length > 0 ? [...config.trustedProxies] : false,
    bodyLimit: MAX_BODY_BYTES,
    exposeHeadRoutes: false,
    // The book's server: 1 min idle, bounded reads. Fastify closes idle keep-alive
    // connections itself on close().
    keepAliveTimeout: 60_000,
    requestTimeout: 30_000,
    routerOptions: { maxParamLength: 4096 },
    // Errors Fastify meets before routing (a malformed %-escape in the path) still get the
    // book's JSON body and our headers; such a path names no resource.
    frameworkErrors: (err, request, reply: FastifyReply) => {
      const response = errorResponse(err.code === 'FST_ERR_BAD_URL' ? new NotFoundError() : err);
      reply
        .code(response.status)
        .headers({ 'x-request-id': request.id, vary: 'Origin, Access-Control-Request-Method' })
        .send({ error: response.error });
    },
  }) as unknown as FastifyInstance;

  // Bodies are decoded by each route with Go's rules (platform/json-body.ts), whatever
  // the Content-Type, exactly as the book's handlers read them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.decorateRequest('identity', null);

  const limiter = config.limiter.enabled
    ? new RateLimiter({ rps: config.limiter.rps, burst: config.limiter.burst })
    : undefined;
  const limited = (act: () => void) => {
    try {
      act();
    } catch (err) {
      metrics.rateLimitRejections.inc();
      throw err;
    }
  };
  const takeToken = (key: string) => limited(() => limiter?.take(key));

  // Order matters: count, CORS (answers preflights itself), authenticate, then limit, so
  // that authenticated users can be limited per user rather than per address. Unknown
  // tokens are charged to the client's address (see authenticationHook).
  app.addHook('onRequest', async (request, reply) => {
    metrics.requestReceived();
    reply.header('x-request-id', request.id);
  });
  app.addHook('onRequest', corsHook(config.cors.trustedOrigins));
  app.addHook(
    'onRequest',
    authenticationHook(
      db,
      identityCache,
      limiter && {
        check: (request) => limited(() => limiter.check(`ip:${request.ip}`)),
        charge: (request) => takeToken(`ip:${request.ip}`),
      },
    ),
  );
  if (limiter) {
    app.addHook('onRequest', async (request) => {
      const identity = request.identity;
      takeToken(config.limiterPerUser && identity ? `user:${identity.id}` : `ip:${request.ip}`);
    });
  }

  app.addHook('onResponse', async (request, reply) => {
    metrics.responseSent(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    request.log.info(
      {
        method: request.method,
        path: request.url,
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 1000) / 1000,
        remote_ip: request.ip,
      },
      'request',
    );
  });

  app.setErrorHandler((err, request, reply) => {
    sendError(err, request, reply);
  });

  app.setNotFoundHandler(async () => {
    throw new NotFoundError();
  });

  app.get('/v1/healthcheck', { schema: { response: { 200: HealthcheckEnvelope } } }, async () => ({
    status: 'available',
    system_info: { environment: config.env, version },
  }));
  movieRoutes(app, db);
  accountRoutes(app, { db, jobs });

  const metricsAccess = async (request: FastifyRequest) => {
    if (config.metricsLoopback && isLoopback(request.ip)) return;
    await requirePermission('metrics:view')(request);
  };
  app.get('/debug/vars', { onRequest: metricsAccess }, async () => metrics.debugVars(version));
  app.get('/metrics', { onRequest: metricsAccess }, async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.prometheus();
  });

  addMethodFallbacks(app, ['/v1/healthcheck', ...MOVIE_PATHS, ...ACCOUNT_PATHS, '/debug/vars', '/metrics']);
  return app;
}
