// Operators' routes: GET /v1/stats, and the profiling endpoints when they are enabled.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import { requireAdmin } from '../accounts/guards.ts';
import type { OperationsConfig } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { ForbiddenError } from '../platform/errors.ts';
import { isLoopback } from '../platform/metrics.ts';
import { first } from '../platform/request.ts';
import { BEARER_REQUIRED, ErrorEnvelope, errors, response } from '../platform/schemas.ts';
import { Validator } from '../platform/validator.ts';
import { cpuProfile, heapSnapshot, MAX_PROFILE_SECONDS } from './profiling.ts';
import { gatherStats } from './stats.ts';

const SourceError = Type.Object(
  { error: Type.Union([Type.Literal('timed out'), Type.Literal('failed')]) },
  { additionalProperties: false },
);
const source = (counts: Record<string, TSchema>) =>
  Type.Union([Type.Object(counts, { additionalProperties: false }), SourceError]);
const Count = Type.Integer({ minimum: 0 });

const StatsEnvelope = Type.Object(
  {
    sources: Type.Object(
      {
        movies: source({
          total: Count,
          added_last_day: Count,
          last_added_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
        }),
        users: source({ total: Count, activated: Count, admins: Count, registered_last_day: Count }),
        tokens: source({ live_sessions: Count, issued_last_day: Count }),
        products: source({ total: Count, stock: Count, created_last_day: Count, updated_last_day: Count }),
        callbacks: source({ pending: Count, oldest_pending_seconds: Type.Number(), objects: Count }),
      },
      { additionalProperties: false },
    ),
    partial: Type.Boolean({ description: 'true when any source timed out or failed (its entry says which)' }),
  },
  { additionalProperties: false },
);

const ProfileQuery = Type.Object({
  seconds: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: MAX_PROFILE_SECONDS,
      default: 10,
      description: 'how long to sample',
    }),
  ),
});

// Written as V8 gives it, not through a schema's serializer.
const V8_JSON = { content: { 'application/json': { schema: Type.Object({}) } } } as unknown as TSchema;

const BUSY = response(ErrorEnvelope, 'a profile or heap snapshot is already being taken by this process');

const TAGS = ['admin'];

export async function statsRoutes(
  app: FastifyInstance,
  { db, options }: Readonly<{ db: Db; options: OperationsConfig }>,
): Promise<void> {
  app.get(
    '/v1/stats',
    {
      onRequest: requireAdmin,
      schema: {
        operationId: 'getStats',
        summary: `Counts and recent activity of every module, gathered at once within -stats-timeout (admins with a full credential)`,
        tags: TAGS,
        security: BEARER_REQUIRED,
        response: {
          200: response(StatsEnvelope, 'Each source its counts, or why it has none'),
          ...errors(403),
        },
      },
    },
    async (request) =>
      gatherStats(db, options.statsTimeoutMs, (name, err) =>
        request.log.error({ err, source: name }, 'stats source failed'),
      ),
  );
}

export const HOST_ONLY = 'a heap snapshot is taken from the host only: ask from a loopback address';

// A heap snapshot holds every secret of the process (the JWT signing key, the database
// password, the SMTP and S3 keys): the admin role, a role of the products API, must not be
// enough to read them. Only a client on the host itself (its address after -trusted-proxies
// is loopback), who could read them from the environment anyway, may take one.
async function fromTheHostOnly(request: FastifyRequest): Promise<void> {
  if (!isLoopback(request.ip)) throw new ForbiddenError(HOST_ONLY);
}

export async function profilingRoutes(app: FastifyInstance): Promise<void> {
  app.post(
    '/v1/admin/profile',
    {
      onRequest: requireAdmin,
      schema: {
        operationId: 'cpuProfile',
        summary: `A CPU profile of the process serving the request, over ?seconds= (1-${MAX_PROFILE_SECONDS}); admins with a full credential; off in production unless -profiling-enabled`,
        tags: TAGS,
        security: BEARER_REQUIRED,
        querystring: ProfileQuery,
        response: {
          200: response(V8_JSON, 'The V8 CPU profile (.cpuprofile)', {
            'Content-Disposition': {
              type: 'string',
              description: 'attachment; filename="<pid>.cpuprofile"',
              required: true,
            },
          }),
          409: BUSY,
          ...errors(403, 422),
        },
      },
    },
    async (request, reply) => {
      const given = first((request.query as { seconds?: unknown }).seconds);
      const seconds = given === undefined ? 10 : Number(given);
      const v = new Validator();
      v.check(
        given === undefined || (/^\d+$/.test(given) && seconds >= 1 && seconds <= MAX_PROFILE_SECONDS),
        'seconds',
        `must be an integer between 1 and ${MAX_PROFILE_SECONDS}`,
      );
      v.assertValid();
      const profile = await cpuProfile(seconds);
      reply
        .type('application/json')
        .header('content-disposition', `attachment; filename="${process.pid}.cpuprofile"`);
      return profile;
    },
  );

  app.post(
    '/v1/admin/heap-snapshot',
    {
      onRequest: [requireAdmin, fromTheHostOnly],
      schema: {
        operationId: 'heapSnapshot',
        summary:
          'A heap snapshot of the process serving the request, streamed; admins with a full credential, from a loopback address only (403 otherwise: the snapshot holds every secret); off in production unless -profiling-enabled',
        tags: TAGS,
        security: BEARER_REQUIRED,
        response: {
          200: response(V8_JSON, 'The V8 heap snapshot (.heapsnapshot)', {
            'Content-Disposition': {
              type: 'string',
              description: 'attachment; filename="<pid>.heapsnapshot"',
              required: true,
            },
          }),
          409: BUSY,
          ...errors(403),
        },
      },
    },
    async (_request, reply) => {
      const snapshot = heapSnapshot();
      reply
        .type('application/json')
        .header('content-disposition', `attachment; filename="${process.pid}.heapsnapshot"`);
      return reply.send(snapshot);
    },
  );
}
