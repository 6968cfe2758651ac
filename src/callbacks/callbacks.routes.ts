// The callback listener's routes: POST /callback (accept), GET / (health), GET /objects
// (what is stored now) and GET /metrics (loopback only).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type prom from 'prom-client';
import { Type } from 'typebox';
import { NotPermittedError } from '../platform/errors.ts';
import { isLoopback } from '../platform/metrics.ts';
import { parseCallbackBody } from './callback.ts';
import type { CallbackService } from './callbacks.ts';

const ErrorEnvelope = Type.Object({ error: Type.String() });

const AcceptedEnvelope = Type.Object({
  // Distinct ids stored for lookup (repeats in the body count once).
  accepted: Type.Integer({ minimum: 0 }),
});

const HealthEnvelope = Type.Object({
  status: Type.Literal('available'),
  backlog: Type.Object({
    callbacks: Type.Integer({ minimum: 0 }),
    oldest_age_seconds: Type.Number({ minimum: 0 }),
  }),
  lookups_in_flight: Type.Integer({ minimum: 0 }),
  breaker: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')]),
});

const ObjectsQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 1_000 })),
});

const ObjectsEnvelope = Type.Object({
  objects: Type.Array(
    Type.Object({ object_id: Type.Integer(), last_seen: Type.String({ format: 'date-time' }) }),
  ),
});

export const CALLBACK_PATHS = ['/callback', '/', '/objects', '/metrics'] as const;

export function callbackRoutes(
  app: FastifyInstance,
  service: CallbackService,
  registry: prom.Registry,
): void {
  app.post(
    '/callback',
    { schema: { response: { 200: AcceptedEnvelope, 400: ErrorEnvelope, 503: ErrorEnvelope } } },
    async (request) => {
      const parsed = parseCallbackBody(request.body as Buffer | undefined);
      await service.accept(parsed.objectIds, parsed.sent);
      return { accepted: parsed.objectIds.length };
    },
  );

  app.get('/', { schema: { response: { 200: HealthEnvelope, 503: ErrorEnvelope } } }, async () => {
    const backlog = await service.health();
    return {
      status: 'available' as const,
      backlog: { callbacks: backlog.callbacks, oldest_age_seconds: backlog.oldestSeconds },
      lookups_in_flight: service.lookupsInFlight,
      breaker: service.breakerState,
    };
  });

  app.get(
    '/objects',
    {
      schema: {
        querystring: ObjectsQuery,
        response: { 200: ObjectsEnvelope, 400: ErrorEnvelope, 503: ErrorEnvelope },
      },
    },
    async (request) => {
      const { limit = 1_000 } = request.query as { limit?: number };
      const objects = await service.objects(limit);
      return {
        objects: objects.map((o) => ({ object_id: o.objectId, last_seen: o.lastSeen.toISOString() })),
      };
    },
  );

  app.get(
    '/metrics',
    { schema: { response: { 403: ErrorEnvelope } } },
    async (request: FastifyRequest, reply) => {
      if (!isLoopback(request.ip)) throw new NotPermittedError();
      reply.type('text/plain; version=0.0.4; charset=utf-8');
      return registry.metrics();
    },
  );
}
