// buildApp: the whole HTTP application, registered in an explicit order. The server and
// the tests both build it here.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import compress from '@fastify/compress';
import websocket from '@fastify/websocket';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import PgBoss from 'pg-boss';
import { ACCOUNT_PATHS, accountRoutes } from './accounts/accounts.routes.ts';
import { EMAIL_QUEUE } from './accounts/accounts.ts';
import type { IdentityCache } from './accounts/identity-cache.ts';
import { jwksRoute } from './auth/jwks.routes.ts';
import { identityRoutes } from './auth/oidc.routes.ts';
import { authenticationHook, createAuthenticators, createJwts, reauthenticator } from './auth/registry.ts';
import type { Config } from './config.ts';
import { graphqlRoutes } from './graphql/graphql.routes.ts';
import { bulkRoutes } from './movies/bulk.routes.ts';
import { MovieCache } from './movies/movie-cache.ts';
import { MOVIE_PATHS, movieRoutes } from './movies/movies.routes.ts';
import { observeMovieChanges } from './movies/movies.ts';
import {
  PROFILING_PATHS,
  profilingRoutes,
  STATS_PATHS,
  statsRoutes,
} from './operations/operations.routes.ts';
import { corsHook } from './platform/cors.ts';
import { createPool, type Db } from './platform/db.ts';
import { BadRequestError, isDatabaseUnavailable, NotFoundError } from './platform/errors.ts';
import { addMethodFallbacks, deprecationHeaders, sendError } from './platform/http.ts';
import { clientErrorHandler, type GreenlightServer, serverFactory } from './platform/http-server.ts';
import type { Jobs } from './platform/jobs.ts';
import { MAX_BODY_BYTES } from './platform/json-body.ts';
import type { Logger } from './platform/logger.ts';
import { Metrics } from './platform/metrics.ts';
import { openApiRoute, registerDocsPage, registerOpenApi } from './platform/openapi.ts';
import { PROBE_PATHS, probeRoutes } from './platform/probes.routes.ts';
import { RedisRateLimiter } from './platform/rate-limit.redis.ts';
import { RateLimiter, type RateLimitSettings, type RateLimitStore } from './platform/rate-limit.ts';
import { type RedisConnection, RedisFallback, registerRedisMetrics } from './platform/redis.ts';
import { requestValidator } from './platform/request.ts';
import { SYSTEM_PATHS, systemRoutes } from './platform/system.routes.ts';
import { posterRoutes } from './posters/posters.routes.ts';
import { createPosters } from './posters/posters.ts';
import { apiErrorResponse, isApiPath, PRODUCTS_API_PREFIX, productsApi } from './products/api.ts';
import { EventFeed } from './realtime/feed.ts';
import { StreamOwners } from './realtime/owners.ts';
import { productEventsRoutes, REALTIME_PATHS, realtimeRoutes } from './realtime/realtime.routes.ts';
import { TOPICS } from './realtime/topics.ts';
import {
  notifyPublisher,
  postgresWakeups,
  publishWakeups,
  redisPublisher,
  redisWakeups,
} from './realtime/wakeups.ts';
import { RuntimeSettings } from './settings/runtime.ts';
import { SETTINGS_PATHS, settingsRoutes } from './settings/settings.routes.ts';

export type AppDeps = Readonly<{
  config: Config;
  db: Db;
  logger: Logger;
  jobs: Jobs;
  metrics?: Metrics;
  // Without one every authenticated request queries the database.
  identityCache?: IdentityCache;
  // Present when -redis-url is set.
  redis?: RedisConnection;
  // Without one the start-up flags stay in force (nothing listens for changes).
  settings?: RuntimeSettings;
}>;

export function createMetrics(config: Config, db: Db, jobs: Jobs): Metrics {
  return new Metrics({ db, maxOpenConns: config.db.maxOpenConns, jobs, queues: [EMAIL_QUEUE] });
}

// The most of a refused body that is discarded to keep its connection: 8 JSON bodies' worth.
const DISCARD_LIMIT = 8 * MAX_BODY_BYTES;

// A client's X-Request-Id is kept when it looks like an id; anything else is replaced.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

export function buildApp({
  config,
  db,
  logger,
  jobs,
  metrics = createMetrics(config, db, jobs),
  identityCache,
  redis,
  settings = new RuntimeSettings(config, logger),
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
    serverFactory: serverFactory(config, {
      onRefused: (reason) => metrics.connectionsRefused.inc({ reason }),
      onClientError: (status) => metrics.clientErrors.inc({ status: String(status) }),
    }),
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
      reply.headers({ 'x-request-id': request.id, vary: 'Origin, Access-Control-Request-Method' });
      if (isApiPath(request.url)) {
        const answer = apiErrorResponse(err);
        reply.code(answer.code).send({ code: answer.code, message: answer.message });
        return;
      }
      sendError(err, request, reply);
    },
  }) as unknown as FastifyInstance;

  // Every request is read through its route's schemas by platform/request.ts, in the
  // dialect of its API (the book's Go messages, seed 002's, the plain one), whatever the
  // Content-Type.
  app.setValidatorCompiler(requestValidator);
  deprecationHeaders(app);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.decorateRequest('identity', null);
  const redisMetrics = redis && registerRedisMetrics(metrics.registry, redis);

  const movieCache =
    redis &&
    redisMetrics &&
    new MovieCache(
      redis,
      config.cacheTtlMs,
      new RedisFallback('movie cache', logger, redisMetrics.fallbacks),
      metrics.registry,
    );
  if (movieCache) {
    const stopObserving = observeMovieChanges(db, (ids) => movieCache.changed(ids));
    app.addHook('onClose', async () => {
      stopObserving();
    });
  }

  const jwts = createJwts(config);
  // Built whether enabled or not: the runtime setting limiter-enabled turns it on and off.
  // `limits` is the holder the limiters read rps and burst from at every request.
  const limits = settings.limits;
  // Per-user buckets would let a client multiply its budget by opening accounts; every
  // request is also charged to its address's ceiling, a multiple of the per-user rate.
  const ceilingSettings: RateLimitSettings = {
    get rps() {
      return limits.rps * config.limiterAddressCeiling;
    },
    get burst() {
      return Math.ceil(limits.burst * config.limiterAddressCeiling);
    },
  };
  const limiterFallback =
    redis && redisMetrics && new RedisFallback('limiter', logger, redisMetrics.fallbacks);
  const limitStore = (name: string, settings: RateLimitSettings): RateLimitStore =>
    redis && limiterFallback
      ? new RedisRateLimiter(redis, name, settings, limiterFallback)
      : new RateLimiter({ settings });
  const limiter = limitStore('client', limits);
  const ceiling = config.limiterPerUser ? limitStore('ceiling', ceilingSettings) : undefined;
  const rejected = (err: unknown): never => {
    metrics.rateLimitRejections.inc();
    throw err;
  };
  // The local store answers synchronously and must not pay for a promise; Redis's does.
  const limited = (act: () => void | Promise<void>): void | Promise<void> => {
    try {
      const result = act();
      return result instanceof Promise ? result.catch(rejected) : result;
    } catch (err) {
      return rejected(err);
    }
  };

  // Order matters: count, CORS (answers preflights itself), authenticate, then limit, so
  // that authenticated users can be limited per user rather than per address. Unknown
  // tokens are charged to the client's address (see authenticationHook).
  // Hooks that usually have nothing to wait for take Fastify's callback, not a promise: every
  // request, a healthcheck too, passes through each of them.
  app.addHook('onRequest', (request, reply, done) => {
    metrics.requestReceived();
    reply.header('x-request-id', request.id);
    // Go's handlers never look at Content-Type; Fastify would refuse a malformed one before
    // the body is read, so it is dropped here and every body reaches the decoder.
    delete request.raw.headers['content-type'];
    // HTTP/1.1 requires Host (Go answers 400 too); Node's own refusal has an empty body.
    if (request.raw.headers.host === undefined && request.raw.httpVersion === '1.1') {
      done(new BadRequestError('missing required Host header'));
      return;
    }
    done();
  });
  // Fastify refuses a body (too large, unreadable) with `Connection: close` before the rest of
  // it has arrived, and closing then resets the connection under a client still sending: the
  // client gets EPIPE instead of the answer. A declared rest up to DISCARD_LIMIT is read and
  // discarded instead (http-server.ts), within -read-timeout, and the connection stays open.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (
      reply.getHeader('connection') === 'close' &&
      !request.raw.complete &&
      Number(request.headers['content-length']) <= DISCARD_LIMIT
    ) {
      reply.removeHeader('connection');
    }
    done(null, payload);
  });
  app.addHook('onRequest', corsHook(settings.cors));
  const authenticators = createAuthenticators({ config, db, cache: identityCache, logger, jwts });
  const authenticate = authenticationHook(
    authenticators,
    {
      check: (request) => (limits.enabled ? limited(() => limiter.check(`ip:${request.ip}`)) : undefined),
      charge: (request) => (limits.enabled ? limited(() => limiter.take(`ip:${request.ip}`)) : undefined),
    },
    PRODUCTS_API_PREFIX,
  );
  // Every credential is looked up, on every route; on a health probe a lookup the database
  // cannot answer is ignored, so an outage never makes the process look dead (liveness) and
  // readiness says why it is not ready.
  app.addHook('onRequest', async (request, reply) => {
    try {
      await authenticate(request, reply);
    } catch (err) {
      if (!(request.routeOptions.config.probe && isDatabaseUnavailable(err))) throw err;
    }
  });
  // The local store answers at once and Redis's with a promise: a step waits only for that.
  const andThen = (step: void | Promise<void>, next: () => void | Promise<void>): void | Promise<void> =>
    step instanceof Promise ? step.then(next) : next();
  const limitRequest = (request: FastifyRequest): void | Promise<void> => {
    const address = `ip:${request.ip}`;
    const key = config.limiterPerUser && request.identity ? `user:${request.identity.id}` : address;
    return andThen(ceiling && limited(() => ceiling.check(address)), () =>
      andThen(
        limited(() => limiter.take(key)),
        () => (ceiling ? limited(() => ceiling.take(address)) : undefined),
      ),
    );
  };
  app.addHook('onRequest', (request, _reply, done) => {
    if (!limits.enabled || request.routeOptions.config.rateLimit === false) {
      done();
      return;
    }
    let pending: void | Promise<void>;
    try {
      pending = limitRequest(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    if (pending) pending.then(() => done(), done);
    else done();
  });

  app.addHook('onResponse', (request, reply, done) => {
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
    done();
  });

  app.setErrorHandler((err, request, reply) => {
    sendError(err, request, reply);
  });

  app.setNotFoundHandler(async () => {
    throw new NotFoundError();
  });

  // Routes are registered after the OpenAPI generator, which records each as it is added.
  registerOpenApi(app);
  // Up to 256 KiB compressed in place: a 13 KB list takes 0.05 ms that way, while the stream
  // path (the plugin's default above 8 KiB on two cores) halved the list's throughput.
  app.register(compress, { threshold: 1024, syncThreshold: 262_144, encodings: ['br', 'gzip'] });
  // Open streams end first, each in its own way (WebSocket clients with 1001), then the
  // WebSocket server closes. Client messages are a few bytes of JSON.
  const streamClosers = new Set<() => void>();
  // The server switches protocols only on these paths (platform/http-server.ts).
  app.addHook('onRoute', (route) => {
    if (route.wsHandler) (app.server as GreenlightServer).webSocketPaths.add(route.url);
  });
  app.register(websocket, {
    options: { maxPayload: 4096 },
    preClose(done) {
      for (const close of streamClosers) close();
      this.websocketServer.close(() => done());
    },
  });
  // The process's event feeds, one per topic (each started by its first stream), and the
  // stream owners they re-check; an identity invalidation re-checks that user's streams at once.
  const wakeups = redis
    ? redisWakeups(redis)
    : postgresWakeups(db.options.connectionString ?? '', TOPICS, logger);
  const feeds = new Map(
    TOPICS.map((topic) => [
      topic.name,
      new EventFeed({ topic, db, wakeups: wakeups(topic), logger, pollMs: config.events.pollMs }),
    ]),
  );
  const reauthenticate = reauthenticator(authenticators);
  const owners = new StreamOwners({ reauthenticate, logger });
  const stopWatchingIdentities = identityCache?.onInvalidation((userId) => owners.identityChanged(userId));
  const publisher = redis ? redisPublisher(redis) : notifyPublisher(db);
  const stopPublishing = TOPICS.map((topic) => publishWakeups(publisher, topic, db, logger));
  app.addHook('onClose', async () => {
    for (const stop of stopPublishing) stop();
    stopWatchingIdentities?.();
    owners.stop();
    await Promise.all([...feeds.values()].map((feed) => feed.stop()));
  });
  const realtime = {
    db,
    feeds,
    owners,
    config: config.events,
    metrics,
    reauthenticate,
    closers: streamClosers,
  };
  const posters = createPosters(db, config.posters, logger);
  app.addHook('onClose', async () => posters.storage.close());
  app.register(async (api) => {
    systemRoutes(api, config, metrics);
    probeRoutes(api, config, db, redis);
    movieRoutes(api, db, movieCache, posters);
    realtimeRoutes(api, realtime);
    bulkRoutes(api, db, config.operations);
    posterRoutes(api, posters);
    statsRoutes(api, db, config.operations);
    if (config.operations.profilingEnabled) profilingRoutes(api);
    accountRoutes(api, { db, jobs });
    openApiRoute(api);
    const jwksPath = jwksRoute(api, jwts);
    const identitiesPath = identityRoutes(api, { config, db, logger });
    api.register(productsApi({ db, jwts, streams: (products) => productEventsRoutes(products, realtime) }), {
      prefix: PRODUCTS_API_PREFIX,
    });
    settingsRoutes(api, db, config);
    if (config.graphql.enabled) graphqlRoutes(api, { db, config, logger, features: settings, posters });
    addMethodFallbacks(api, [
      ...SYSTEM_PATHS,
      ...PROBE_PATHS,
      ...MOVIE_PATHS,
      ...REALTIME_PATHS,
      ...ACCOUNT_PATHS,
      ...STATS_PATHS,
      ...SETTINGS_PATHS,
      ...(config.operations.profilingEnabled ? PROFILING_PATHS : []),
      '/v1/openapi.json',
      ...(jwksPath ? [jwksPath] : []),
      ...(identitiesPath ? [identitiesPath] : []),
    ]);
  });
  registerDocsPage(app);
  return app;
}

// The OpenAPI document without a database: the app is built on a pool and a job queue that
// are never connected, and a JWT secret that never signs, since generating the document runs
// no request.
export async function openApiDocument(config: Config, logger: Logger): Promise<unknown> {
  const nowhere = 'postgres://greenlight@127.0.0.1:1/greenlight';
  const db = createPool({ ...config.db, dsn: nowhere });
  const unsigned = {
    ...config,
    auth: { ...config.auth, jwtSecret: config.auth.jwtSecret || 'document-only' },
  };
  const app = buildApp({ config: unsigned, db, logger, jobs: new PgBoss(nowhere) });
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
    await db.end();
  }
}
