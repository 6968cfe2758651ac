// buildApp: the whole HTTP application, registered in an explicit order. The server and
// the tests both build it here.
import zlib from 'node:zlib';
import compress from '@fastify/compress';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import PgBoss from 'pg-boss';
import { ACCOUNTS_QUEUES } from './accounts/accounts.queues.ts';
import { accountRoutes } from './accounts/accounts.routes.ts';
import type { IdentityCache } from './accounts/identity-cache.ts';
import { apiErrorResponse, isApiPath, PRODUCTS_API_PREFIX, productsApi } from './api-v1/api.ts';
import { authenticationPlugin } from './auth/authentication.plugin.ts';
import { jwksRoute } from './auth/jwks.routes.ts';
import { identityRoutes } from './auth/oidc.routes.ts';
import { createAuthenticators, createJwts, reauthenticator } from './auth/registry.ts';
import { brokerPlugin } from './broker/broker.plugin.ts';
import type { Config } from './config.ts';
import { graphqlRoutes } from './graphql/graphql.routes.ts';
import { createGrpcHandler, type GrpcHandler } from './grpc/grpc.ts';
import { bulkRoutes } from './movies/bulk.routes.ts';
import { createMovieCache } from './movies/movie-cache.ts';
import { movieRoutes } from './movies/movies.routes.ts';
import { profilingRoutes, statsRoutes } from './operations/operations.routes.ts';
import { probeRoutes } from './operations/probes.routes.ts';
import { systemRoutes } from './operations/system.routes.ts';
import { orderMetrics } from './orders/orders.metrics.ts';
import { ORDERS_QUEUES } from './orders/workflow.queue.ts';
import { corsPlugin } from './platform/cors.ts';
import { createPool, type Db } from './platform/db.ts';
import { fastifyOptions } from './platform/fastify-options.ts';
import { deprecationHeaders, sendError, withMethodFallbacks } from './platform/http.ts';
import type { Jobs } from './platform/jobs.ts';
import type { Logger } from './platform/logger.ts';
import { Metrics } from './platform/metrics.ts';
import { openApiRoute, registerDocsPage, registerOpenApi } from './platform/openapi.ts';
import { RequestLimits, rateLimitPlugin } from './platform/rate-limit.plugin.ts';
import { type RedisConnection, registerRedisMetrics } from './platform/redis.ts';
import { requestValidator } from './platform/request.ts';
import { requestsPlugin } from './platform/requests.plugin.ts';
import { posterRoutes } from './posters/posters.routes.ts';
import { afterMovieDeleted, createPosters } from './posters/posters.ts';
import { createRealtime, websocketPlugin } from './realtime/realtime.plugin.ts';
import { apiEventStreamRoutes, realtimeRoutes } from './realtime/realtime.routes.ts';
import { RuntimeSettings } from './settings/runtime.ts';
import { settingsRoutes } from './settings/settings.routes.ts';

declare module 'fastify' {
  interface FastifyInstance {
    // The gRPC, gRPC-Web and Connect services on the app's pool, authenticators, limiter and
    // event feeds; server.ts serves them on -grpc-addr.
    grpc: GrpcHandler;
  }
}

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

// The depth of each queue a module declares is reported; the tasks' queues are not, as their
// runs have gauges of their own (tasks/tasks.ts).
export function createMetrics(config: Config, db: Db, jobs: Jobs): Metrics {
  const queues = [...ACCOUNTS_QUEUES, ...ORDERS_QUEUES].map((queue) => queue.name);
  return new Metrics({ db, maxOpenConns: config.db.maxOpenConns, jobs, queues });
}

// Errors Fastify meets before routing (a malformed %-escape in the path, an overlong
// parameter) still get their API's JSON body and our headers.
function answerFrameworkError(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  reply.headers({ 'x-request-id': request.id, vary: 'Origin, Access-Control-Request-Method' });
  if (isApiPath(request.url)) {
    const answer = apiErrorResponse(err);
    reply.code(answer.code).send({ code: answer.code, message: answer.message });
    return;
  }
  sendError(err, request, reply);
}

// Up to 256 KiB compressed in place: a 13 KB list takes 0.05 ms that way, while the stream
// path (the plugin's default above 8 KiB on two cores) halved the list's throughput.
// Brotli's window is 256 KiB instead of 4 MiB, as large as anything compressed in place:
// the same bytes, but a page of 100 movies took 158 instead of 274 µs (the encoder sizes
// its buffers by the window), and a compressing stream holds 16 times less. Quality 3, not
// the plugin's 4: that page came out 1.5 % larger in about two thirds of the time.
const COMPRESSION = {
  threshold: 1024,
  syncThreshold: 262_144,
  encodings: ['br', 'gzip'] as ('br' | 'gzip')[],
  brotliOptions: {
    params: {
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_QUALITY]: 3,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 18,
    },
  },
};

// Every request is read through its route's schemas by platform/request.ts, in the dialect of
// its API (the book's Go messages, seed 002's, the plain one), whatever the Content-Type: the
// body reaches it as bytes.
function readThroughRouteSchemas(app: FastifyInstance): void {
  app.setValidatorCompiler(requestValidator);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
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
  const options = fastifyOptions(config, metrics, logger, answerFrameworkError);
  const app = Fastify(options) as unknown as FastifyInstance;

  readThroughRouteSchemas(app);
  deprecationHeaders(app);

  const redisMetrics = redis && registerRedisMetrics(metrics.registry, redis);
  const movieCache = createMovieCache(app, { config, db, logger, metrics, redis, redisMetrics });
  const jwts = createJwts(config);
  const authenticators = createAuthenticators({ config, db, cache: identityCache, logger, jwts });
  // Built whether enabled or not: the runtime setting limiter-enabled turns it on and off.
  const limits = new RequestLimits({ config, limits: settings.limits, metrics, logger, redis, redisMetrics });
  const reauthenticate = reauthenticator(authenticators);
  const realtime = createRealtime({ config, db, logger, metrics, reauthenticate, redis, identityCache });
  const posters = createPosters(db, config.posters, logger);
  app.addHook('onClose', async () => posters.storage.close());
  const afterDelete = afterMovieDeleted(posters);
  const grpc = { config, db, jobs, logger, metrics, authenticators, limits, realtime, redis, afterDelete };
  app.decorate('grpc', createGrpcHandler(grpc));

  // Order matters: count, CORS (answers preflights itself), authenticate, then limit, so
  // that authenticated users can be limited per user rather than per address.
  app.register(requestsPlugin, { metrics });
  app.register(corsPlugin, { cors: settings.cors });
  app.register(authenticationPlugin, {
    authenticators,
    budget: limits.addressBudget,
    anyCaseSchemeUnder: PRODUCTS_API_PREFIX,
  });
  app.register(rateLimitPlugin, { limits });
  // Routes are registered after the OpenAPI generator, which records each as it is added.
  registerOpenApi(app);
  app.register(compress, COMPRESSION);
  app.register(websocketPlugin, { realtime });
  const orders = { jobs, metrics: orderMetrics(metrics.registry) };
  if (config.broker.url !== '') {
    const wakeups = realtime.wakeups;
    app.register(brokerPlugin, { config, db, logger, metrics, orders, reauthenticate, wakeups });
  }
  // The book's routes and the products API, in the order the OpenAPI document lists them; every
  // path answers its other methods (withMethodFallbacks).
  app.register(
    withMethodFallbacks(async (api) => {
      api.register(systemRoutes, { config, metrics });
      api.register(probeRoutes, { config, db, redis });
      api.register(movieRoutes, { db, cache: movieCache, afterDelete });
      api.register(realtimeRoutes, realtime);
      api.register(statsRoutes, { db, options: config.operations });
      if (config.operations.profilingEnabled) api.register(profilingRoutes);
      api.register(accountRoutes, { db, jobs });
      api.register(openApiRoute);
      api.register(jwksRoute, { jwts });
      api.register(identityRoutes, { config, db, logger });
      api.register(settingsRoutes, { db, config });
      api.register(bulkRoutes, { db, options: config.operations });
      api.register(posterRoutes, { store: posters });
      const streams = (products: FastifyInstance) => apiEventStreamRoutes(products, realtime);
      api.register(productsApi({ db, jwts, jobs, registry: metrics.registry, streams }), {
        prefix: PRODUCTS_API_PREFIX,
      });
      api.register(graphqlRoutes, { db, config, logger, features: settings, posters, orders });
    }),
  );
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
