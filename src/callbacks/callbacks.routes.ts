// The callback listener's routes: POST /callback (accept), GET / (health), GET /objects
// (what is stored now), GET /metrics (loopback only) and GET /openapi.json (their document).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type prom from 'prom-client';
import { type Static, type TSchema, Type } from 'typebox';
import { NotPermittedError } from '../platform/errors.ts';
import { isLoopback } from '../platform/metrics.ts';
import type { DocumentBase } from '../platform/openapi.ts';
import { requestValidator } from '../platform/request.ts';
import { ErrorEnvelope, NO_CREDENTIALS, response } from '../platform/schemas.ts';
import { version } from '../version.ts';
import { CallbackBody, callbackIds } from './callback.ts';
import type { CallbackService } from './callbacks.ts';

export const CALLBACKS_DOCUMENT: DocumentBase = {
  openapi: '3.1.0',
  info: {
    title: 'Greenlight callback service',
    version,
    description: `Seed 003's callback ingestion, on its own address (\`-callbacks-addr\`, default localhost:9090).

- A valid \`POST /callback\` is stored durably before its 200, and its objects are looked up upstream afterwards.
- Every error is \`{"error": "message"}\`; every response carries \`X-Request-Id\`.
- A path that exists answers other methods with 405 and an \`Allow\` header, and \`OPTIONS\` with 200 and \`Allow\`.
- No credentials: run it where only the sender reaches it.`,
  },
  tags: [{ name: 'callbacks', description: 'Intake, health and the stored objects' }],
};

const UNAVAILABLE = () =>
  response(ErrorEnvelope, 'the database is unavailable (or: the callback could not be stored, please retry)');

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

export function callbackRoutes(
  app: FastifyInstance,
  service: CallbackService,
  registry: prom.Registry,
): void {
  acceptRoute(app, service);
  stateRoutes(app, service);
  operatorRoutes(app, registry);
}

function acceptRoute(app: FastifyInstance, service: CallbackService): void {
  app.post(
    '/callback',
    {
      // The body is read by its schema's reader; the listener's other routes keep Ajv.
      validatorCompiler: requestValidator,
      schema: {
        operationId: 'postCallback',
        summary: 'Accept a callback: its ids are stored durably before the answer, looked up afterwards',
        tags: ['callbacks'],
        security: NO_CREDENTIALS,
        body: CallbackBody,
        response: {
          200: response(AcceptedEnvelope, 'Stored; the objects will be looked up'),
          400: response(
            ErrorEnvelope,
            'Malformed JSON, object_ids missing or not an array of non-negative integers, over 10,000 ids, or a body over 1 MiB; nothing is stored',
          ),
          503: UNAVAILABLE(),
        },
      },
    },
    async (request) => {
      const parsed = callbackIds(request.body as Static<typeof CallbackBody>);
      await service.accept(parsed.objectIds, parsed.sent);
      return { accepted: parsed.objectIds.length };
    },
  );
}

// Health and the stored objects.
function stateRoutes(app: FastifyInstance, service: CallbackService): void {
  app.get(
    '/',
    {
      schema: {
        operationId: 'callbackHealth',
        summary: 'Health: 200 while the database answers, with the backlog and the breaker state',
        tags: ['callbacks'],
        security: NO_CREDENTIALS,
        response: { 200: response(HealthEnvelope, 'Available'), 503: UNAVAILABLE() },
      },
    },
    async () => {
      const backlog = await service.health();
      return {
        status: 'available' as const,
        backlog: { callbacks: backlog.callbacks, oldest_age_seconds: backlog.oldestSeconds },
        lookups_in_flight: service.lookupsInFlight,
        breaker: service.breakerState,
      };
    },
  );

  app.get(
    '/objects',
    {
      schema: {
        operationId: 'listObjects',
        summary: 'The online objects stored now, by id',
        tags: ['callbacks'],
        security: NO_CREDENTIALS,
        querystring: ObjectsQuery,
        response: {
          200: response(ObjectsEnvelope, 'The stored objects'),
          400: response(ErrorEnvelope, 'limit is not an integer from 1 to 10,000'),
          503: UNAVAILABLE(),
        },
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
}

// Prometheus metrics and this listener's OpenAPI document.
function operatorRoutes(app: FastifyInstance, registry: prom.Registry): void {
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'callbackMetrics',
        summary: "The callback service's Prometheus metrics (loopback clients only)",
        tags: ['callbacks'],
        security: NO_CREDENTIALS,
        response: {
          200: response(
            { content: { 'text/plain': { schema: Type.String() } } } as unknown as TSchema,
            'Prometheus text format 0.0.4',
          ),
          403: response(
            ErrorEnvelope,
            "your user account doesn't have the necessary permissions to access this resource (a client that is not on loopback)",
          ),
        },
      },
    },
    async (request: FastifyRequest, reply) => {
      if (!isLoopback(request.ip)) throw new NotPermittedError();
      reply.type('text/plain; version=0.0.4; charset=utf-8');
      return registry.metrics();
    },
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        operationId: 'getCallbackOpenApiDocument',
        summary: "This OpenAPI 3.1 document, of the callback listener's routes",
        tags: ['callbacks'],
        security: NO_CREDENTIALS,
        response: {
          200: response(Type.Object({}, { additionalProperties: true }), 'The OpenAPI 3.1 document'),
        },
      },
    },
    async () => app.swagger(),
  );
}
