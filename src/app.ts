// buildApp: the whole HTTP application, registered in an explicit order. The server and
// the tests both build it here.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BlockList, isIPv6 } from 'node:net';
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
import { graphqlRoutes } from './graphql/graphql.routes.ts';
import { MOVIE_PATHS, movieRoutes } from './movies/movies.routes.ts';
import { corsHook } from './platform/cors.ts';
import type { Db } from './platform/db.ts';
import { BadRequestError, errorResponse, NotFoundError } from './platform/errors.ts';
import { addMethodFallbacks, errorHandler } from './platform/http.ts';
import { clientErrorHandler, effectiveMaxConnections, GreenlightServer } from './platform/http-server.ts';
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

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

// Trusted proxies as a BlockList, for the per-address connection cap.
function proxyMatcher(proxies: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const proxy of proxies) {
    const [address = '', prefix] = proxy.split('/');
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (address) => {
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
    return list.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
  };
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
    // Timeouts, connection caps and the lossless drain live in the server (platform/http-server.ts).
    serverFactory: (handler) =>
      new GreenlightServer(
        handler,
        {
          headerTimeoutMs: config.http.readHeaderTimeoutMs,
          requestTimeoutMs: config.http.readTimeoutMs,
          idleTimeoutMs: config.http.idleTimeoutMs,
          maxConnections: effectiveMaxConnections(config.http.maxConnections),
          maxConnectionsPerAddress: config.http.maxConnectionsPerIp,
          isProxy: proxyMatcher(config.trustedProxies),
        },
        {
          onRefused: (reason) => metrics.connectionsRefused.inc({ reason }),
          onClientError: (status) => metrics.clientErrors.inc({ status: String(status) }),
        },
      ),
    forceCloseConnections: false,
    // Requests that arrive while closing are served (with `Connection: close`), not refused.
    return503OnClosing: false,
    clientErrorHandler: clientErrorHandler({
      onClientError: (status) => metrics.clientErrors.inc({ status: String(status) }),
    }),
    routerOptions: { maxParamLength: 4096 },
    // Errors Fastify meets before routing (a malformed %-escape in the path, an overlong
    // parameter) still get the book's JSON body and our headers.
    frameworkErrors: (err, request, reply: FastifyReply) => {
      const response = errorResponse(err);
      if (response.status >= 500) {
        request.log.error({ err, method: request.method, path: request.url }, 'request failed');
      }
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
  // Per-user buckets would let a client multiply its budget by opening accounts; every
  // request is also charged to its address's ceiling, a multiple of the per-user rate.
  const ceiling =
    limiter && config.limiterPerUser
      ? new RateLimiter({
          rps: config.limiter.rps * config.limiterAddressCeiling,
          burst: Math.ceil(config.limiter.burst * config.limiterAddressCeiling),
        })
      : undefined;

  // Order matters: count, CORS (answers preflights itself), authenticate, then limit, so
  // that authenticated users can be limited per user rather than per address. Unknown
  // tokens are charged to the client's address (see authenticationHook).
  app.addHook('onRequest', async (request, reply) => {
    metrics.requestReceived();
    reply.header('x-request-id', request.id);
  });
  app.addHook('onRequest', async (request) => {
    // Go's handlers never look at Content-Type; Fastify would refuse a malformed one before
    // the body is read, so it is dropped here and every body reaches the decoder.
    delete request.raw.headers['content-type'];
    // HTTP/1.1 requires Host (Go answers 400 too); Node's own refusal has an empty body.
    if (request.raw.headers.host === undefined && request.raw.httpVersion === '1.1') {
      throw new BadRequestError('missing required Host header');
    }
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
      const address = `ip:${request.ip}`;
      limited(() => ceiling?.check(address));
      takeToken(config.limiterPerUser && identity ? `user:${identity.id}` : address);
      limited(() => ceiling?.take(address));
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

  app.setErrorHandler(errorHandler((response) => ({ error: response.error })));

  app.setNotFoundHandler(async () => {
    throw new NotFoundError();
  });

  app.get('/v1/healthcheck', { schema: { response: { 200: HealthcheckEnvelope } } }, async () => ({
    status: 'available',
    system_info: { environment: config.env, version },
  }));
  movieRoutes(app, db);
  accountRoutes(app, { db, jobs });
  if (config.graphql.enabled) graphqlRoutes(app, { db, config, logger });

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
