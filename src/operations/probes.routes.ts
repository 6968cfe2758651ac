// Probes for orchestrators: liveness says the process answers (a restart would help if not);
// readiness says this instance can serve (the database answers and its schema is the one this
// code expects), so a load balancer sends it traffic. Neither counts against the rate limiter
// (a throttled probe would take a healthy instance out of rotation); credentials sent along
// are still authenticated, and that can be refused (401, or 429 for an address over its limit),
// except that a credential the unreachable database cannot check is ignored here.
// Why a check fails (the database's or Redis's own error text: host names, ports, user names)
// is for operators only (isOperator, as /debug/vars); anyone else gets the status alone.
// Being exempt from the limiter, readiness is checked at most once a second (cachedReadiness):
// a flood of /readyz must not take a database connection per request.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { type Migration, readMigrations, readVersion, schemaState } from '../platform/migrations.ts';
import type { RedisConnection } from '../platform/redis.ts';
import { BEARER_OPTIONAL, errors, response } from '../platform/schemas.ts';
import { isOperator } from './system.routes.ts';

const Liveness = Type.Object({ status: Type.Literal('alive') }, { additionalProperties: false });

const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    checks: Type.Optional(
      Type.Object(
        {
          database: Type.String({ examples: ['ok'], description: "'ok' or why it is unreachable" }),
          migrations: Type.String({
            examples: ['ok', 'pending: 000016'],
            description:
              "'ok', 'pending: VERSIONS', 'dirty: VERSION', 'unknown version: VERSION' or 'unknown'",
          }),
          redis: Type.Optional(
            Type.String({
              examples: ['ok', 'unreachable: connect ECONNREFUSED 127.0.0.1:6379'],
              description: "Only with -redis-url: 'ok' or why it cannot be used",
            }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'Only for loopback clients (unless -metrics-loopback=false) and holders of metrics:view',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

const UNDEFINED_TABLE = '42P01';

export type ReadinessDeps = Readonly<{ db: Db; redis?: RedisConnection; migrations?: readonly Migration[] }>;

// Can this instance serve, and each check's state: for /readyz and gRPC's health service.
export async function readiness({ db, redis, migrations = readMigrations() }: ReadinessDeps) {
  let database = 'ok';
  let schema = 'unknown';
  try {
    const current = await readVersion(db).catch((err: { code?: string }) => {
      if (err.code === UNDEFINED_TABLE) return { version: null, dirty: false };
      throw err;
    });
    schema = schemaState(current, migrations);
  } catch (err) {
    database = `unreachable: ${(err as Error).message}`;
  }
  // Requests are still served while Redis is down (every use of it falls back), but limits
  // are then per instance and other instances' invalidations are not seen, so say so.
  const checks = redis
    ? { database, migrations: schema, redis: redis.status() }
    : { database, migrations: schema };
  return { ready: Object.values(checks).every((check) => check === 'ok'), checks };
}

export type ReadinessAnswer = Awaited<ReturnType<typeof readiness>>;

// How long one readiness answer serves every /readyz request and gRPC health call.
export const READINESS_TTL_MS = 1_000;

// readiness() at most once per ttlMs, whoever asks and however many at once: callers within
// the same second share one answer (and one database query).
export function cachedReadiness(
  deps: ReadinessDeps,
  ttlMs = READINESS_TTL_MS,
): () => Promise<ReadinessAnswer> {
  let last: { at: number; answer: Promise<ReadinessAnswer> } | undefined;
  return () => {
    const now = performance.now();
    if (!last || now - last.at >= ttlMs) last = { at: now, answer: readiness(deps) };
    return last.answer;
  };
}

export async function probeRoutes(
  app: FastifyInstance,
  { config, db, redis, migrations = readMigrations() }: ReadinessDeps & Readonly<{ config: Config }>,
): Promise<void> {
  const currentReadiness = cachedReadiness({ db, redis, migrations });
  app.get(
    '/livez',
    {
      config: { rateLimit: false, probe: true },
      schema: {
        operationId: 'liveness',
        summary: 'Is the process alive? Never touches the database.',
        tags: ['system'],
        security: BEARER_OPTIONAL,
        response: { 200: response(Liveness, 'The process answers'), ...errors() },
      },
    },
    async () => ({ status: 'alive' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { rateLimit: false, probe: true },
      schema: {
        operationId: 'readiness',
        summary:
          'Can this instance serve? The database answers, its migrations are current, Redis answers when configured.',
        tags: ['system'],
        security: BEARER_OPTIONAL,
        response: {
          200: response(Readiness, 'Ready'),
          503: response(Readiness, 'Not ready; the failing check says why'),
          ...errors(),
        },
      },
    },
    async (request, reply) => {
      const { ready, checks } = await currentReadiness();
      reply.code(ready ? 200 : 503);
      const status = ready ? ('ready' as const) : ('unavailable' as const);
      return isOperator(request, config) ? { status, checks } : { status };
    },
  );
}
