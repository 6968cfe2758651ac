// The gRPC part of the app: MoviesService, ProductsService, OrdersService, health and
// reflection behind one handler that speaks gRPC, gRPC-Web and Connect (connectNodeAdapter;
// unary gRPC calls take a shorter path to the same interceptors and methods, unary.ts),
// built by buildApp on the same pool, job queue, authenticators, rate limiter and event feeds
// as the HTTP routes, and served by its own listener (listener.ts).
// The adapter is imported by the first call that needs it: @connectrpc/connect-node's ES
// import of node:http loads Node's bundled undici (about 13 MiB resident, nodejs/node#59686)
// into every worker, and a worker that serves only REST, or only unary gRPC, never uses it.
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { DescService } from '@bufbuild/protobuf';
import { Code, createContextValues } from '@connectrpc/connect';
import type { connectNodeAdapter } from '@connectrpc/connect-node';
import { MoviesService } from '../../gen/greenlight/v1/movies_pb.ts';
import { OrdersService } from '../../gen/greenlight/v1/orders_pb.ts';
import { ProductsService } from '../../gen/greenlight/v1/products_pb.ts';
import { Health } from '../../gen/grpc/health/v1/health_pb.js';
import type { Authenticator } from '../auth/authenticator.ts';
import type { Config } from '../config.ts';
import type { AfterMovieDeleted } from '../movies/movies.ts';
import { orderMetrics } from '../orders/orders.metrics.ts';
import type { Db } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import type { RequestLimits } from '../platform/rate-limit.plugin.ts';
import type { RedisConnection } from '../platform/redis.ts';
import type { RealtimeDeps } from '../realtime/stream.ts';
import { CLIENT_IP, callInterceptor } from './calls.ts';
import type { Dialect } from './errors.ts';
import { grpcMetrics } from './grpc.metrics.ts';
import { healthService } from './health.ts';
import { moviesService } from './movies.service.ts';
import { ordersService } from './orders.service.ts';
import { productsService } from './products.service.ts';
import { reflectionServices } from './reflection.ts';
import { dropDeadlinesPastTimers, unaryFastPath } from './unary.ts';

export type GrpcDeps = Readonly<{
  config: Config;
  db: Db;
  // the queue an order's first workflow step is enqueued on
  jobs: Jobs;
  logger: Logger;
  metrics: Metrics;
  authenticators: readonly Authenticator[];
  limits: RequestLimits;
  realtime: RealtimeDeps;
  redis?: RedisConnection;
  afterDelete?: AfterMovieDeleted;
}>;

type Handle = ReturnType<typeof connectNodeAdapter>;

export type GrpcHandler = Readonly<{
  handle: Handle;
  // health says NOT_SERVING from now on (shutdown has begun)
  drain: () => void;
}>;

// The API's services, each with the API whose messages its errors carry.
const SERVICES: ReadonlyArray<readonly [DescService, Dialect]> = [
  [MoviesService, 'book'],
  [ProductsService, 'products'],
  [OrdersService, 'products'],
];

// grpc-message as the gRPC spec encodes it: only bytes outside printable ASCII, and '%'.
// Connect encodes it as a URI component (',' as %2C), which grpc-js, decoding with decodeURI,
// would show as is; this form reads the same to both.
export function percentEncoded(message: string): string {
  let encoded = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    encoded +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

// What the adapter calls for a path none of its routes has.
type Fallback = NonNullable<Parameters<typeof connectNodeAdapter>[0]['fallback']>;

// A call of no method this server has: gRPC (and gRPC-Web) clients expect UNIMPLEMENTED in a
// trailers-only answer, as grpc-go words it; anything else gets the adapter's plain 404.
function unimplemented(served: readonly DescService[]): Fallback {
  return (req, res) => {
    // Both kinds of response have this writeHead; their union's types do not say so.
    const answer = res as ServerResponse;
    const contentType = req.headers['content-type'] ?? '';
    if (!contentType.startsWith('application/grpc')) {
      answer.writeHead(404);
      answer.end();
      return;
    }
    const [, serviceName = '', method = ''] = (req.url ?? '').split('?')[0]?.split('/') ?? [];
    const message = served.some((service) => service.typeName === serviceName)
      ? `unknown method ${method} for service ${serviceName}`
      : `unknown service ${serviceName}`;
    answer.writeHead(200, {
      'content-type': contentType,
      'grpc-status': String(Code.Unimplemented),
      'grpc-message': percentEncoded(message),
    });
    answer.end();
  };
}

export function createGrpcHandler(deps: GrpcDeps): GrpcHandler {
  const { config, db, logger, redis } = deps;
  let draining = false;
  const watch = { ...deps.realtime, logger };
  const served = [...SERVICES.map(([service]) => service), Health];
  const orders = { jobs: deps.jobs, metrics: orderMetrics(deps.metrics.registry) };
  const names = served.map((service) => service.typeName);
  const services: ReadonlyArray<readonly [DescService, object]> = [
    [MoviesService, moviesService({ db, afterDelete: deps.afterDelete, watch })],
    [ProductsService, productsService({ db, watch })],
    [OrdersService, ordersService({ db, ...orders, watch })],
    [Health, healthService({ db, redis, services: names, draining: () => draining })],
    ...reflectionServices(served),
  ];
  const interceptors = [
    callInterceptor({
      authenticators: deps.authenticators,
      limits: deps.limits,
      metrics: grpcMetrics(deps.metrics),
      logger,
      dialects: new Map(SERVICES.map(([service, dialect]) => [service.typeName, dialect])),
      unlimited: new Set([Health.typeName]),
    }),
  ];
  const contextValues = (req: { socket: { remoteAddress?: string } }) =>
    createContextValues().set(CLIENT_IP, req.socket.remoteAddress ?? '');
  let adapter: Promise<Handle> | undefined;
  const loadAdapter = async (): Promise<Handle> => {
    const { connectNodeAdapter } = await import('@connectrpc/connect-node');
    return connectNodeAdapter({
      routes: (router) => {
        // biome-ignore lint/suspicious/noExplicitAny: each implementation belongs to its service
        for (const [service, impl] of services) router.service(service, impl as any);
      },
      interceptors,
      readMaxBytes: config.grpc.maxMessageBytes,
      contextValues,
      // A field the message does not have is refused, as REST refuses an unknown key (Connect
      // ignores it by default: a typo would change nothing, and answer OK).
      jsonOptions: { ignoreUnknownFields: false },
      fallback: unimplemented(served),
    });
  };
  const unary = unaryFastPath({
    services,
    interceptors,
    maxBytes: config.grpc.maxMessageBytes,
    contextValues,
    encodeMessage: percentEncoded,
  });
  const handle: Handle = (req, res) => {
    dropDeadlinesPastTimers(req.headers);
    if ('stream' in req && unary(req, res as Http2ServerResponse)) return;
    const addTrailers = res.addTrailers.bind(res);
    res.addTrailers = (trailers: Record<string, string>) => {
      const message = trailers['grpc-message'];
      if (typeof message === 'string') trailers['grpc-message'] = percentEncoded(decodeURIComponent(message));
      addTrailers(trailers);
    };
    adapter ??= loadAdapter();
    adapter.then(
      (serve) => serve(req, res),
      (err: unknown) => {
        adapter = undefined;
        logger.error({ err }, 'gRPC: the Connect adapter could not be loaded');
        res.destroy();
      },
    );
  };
  return {
    handle,
    drain: () => {
      draining = true;
    },
  };
}
