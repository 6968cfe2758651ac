// Routes about the service itself: health, the book's expvar metrics and Prometheus text. Here,
// not in platform/, because who may read them is an account's permission (metrics:view).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { permissionRefusal, requirePermission } from '../accounts/guards.ts';
import type { Config } from '../config.ts';
import { isLoopback, type Metrics } from '../platform/metrics.ts';
import { BEARER_OPTIONAL, errors, response } from '../platform/schemas.ts';
import { version } from '../version.ts';

const HealthcheckEnvelope = Type.Object(
  {
    status: Type.String({ examples: ['available'] }),
    system_info: Type.Object(
      {
        environment: Type.String({ examples: ['development'] }),
        version: Type.String({ examples: ['0.1.0'] }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const DebugVars = Type.Object(
  {
    cmdline: Type.Array(Type.String()),
    database: Type.Object(
      {},
      { additionalProperties: Type.Integer(), description: "Go's sql.DBStats fields" },
    ),
    goroutines: Type.Integer(),
    memstats: Type.Object({}, { additionalProperties: Type.Number() }),
    timestamp: Type.Integer(),
    total_processing_time_μs: Type.Integer(),
    total_requests_received: Type.Integer(),
    total_responses_sent: Type.Integer(),
    total_responses_sent_by_status: Type.Object({}, { additionalProperties: Type.Integer() }),
    version: Type.String(),
  },
  { additionalProperties: false },
);

const OPERATOR_ACCESS =
  'Loopback clients (unless -metrics-loopback=false) and users holding metrics:view; anyone else gets 401/403';

// Operators: loopback clients (unless -metrics-loopback=false) and holders of metrics:view.
// They read /debug/vars and /metrics, and the reasons a readiness check fails.
export function isOperator(request: FastifyRequest, config: Config): boolean {
  return (
    (config.metricsLoopback && isLoopback(request.ip)) ||
    permissionRefusal(request.identity, 'metrics:view') === null
  );
}

export async function systemRoutes(
  app: FastifyInstance,
  { config, metrics }: Readonly<{ config: Config; metrics: Metrics }>,
): Promise<void> {
  app.get(
    '/v1/healthcheck',
    {
      config: { probe: true },
      schema: {
        operationId: 'healthcheck',
        summary: 'Is the service up?',
        tags: ['system'],
        security: BEARER_OPTIONAL,
        response: { 200: response(HealthcheckEnvelope, 'The service is available'), ...errors() },
      },
    },
    async () => ({ status: 'available', system_info: { environment: config.env, version } }),
  );

  // Anyone else gets the 401 or 403 that says why not.
  const operatorsOnly = async (request: FastifyRequest) => {
    if (!isOperator(request, config)) await requirePermission('metrics:view')(request);
  };

  app.get(
    '/debug/vars',
    {
      onRequest: operatorsOnly,
      schema: {
        operationId: 'debugVars',
        summary: `The book's expvar counters. ${OPERATOR_ACCESS}`,
        tags: ['system'],
        security: BEARER_OPTIONAL,
        response: { 200: response(DebugVars, 'expvar JSON'), ...errors(403) },
      },
    },
    async () => metrics.debugVars(version),
  );

  app.get(
    '/metrics',
    {
      onRequest: operatorsOnly,
      schema: {
        operationId: 'prometheusMetrics',
        summary: `Prometheus text exposition. ${OPERATOR_ACCESS}`,
        tags: ['system'],
        security: BEARER_OPTIONAL,
        response: {
          200: response(
            { content: { 'text/plain': { schema: Type.String() } } } as unknown as TSchema,
            'Prometheus text format 0.0.4',
          ),
          ...errors(403, 500),
        },
      },
    },
    async (_request, reply) => {
      reply.type('text/plain; version=0.0.4; charset=utf-8');
      return metrics.prometheus();
    },
  );
}
