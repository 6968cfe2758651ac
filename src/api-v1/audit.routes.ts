// GET /api/v1/admin/audit: the audit trail for admins, newest first, keyset paginated. A route
// of seed 002's API (its envelope, its prefix), so it lives with that API, not in audit/.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { requireAdmin } from '../accounts/guards.ts';
import { listEvents } from '../audit/audit.ts';
import type { Db } from '../platform/db.ts';
import { BadRequestError } from '../platform/errors.ts';
import { first, INT64_MAX, queryOf, type RawPart, withPartReader } from '../platform/request.ts';
import { BEARER_REQUIRED, response } from '../platform/schemas.ts';
import { apiErrors } from './responses.ts';

const AuditPage = Type.Object({
  data: Type.Array(
    Type.Object({
      id: Type.Integer(),
      created_at: Type.String({ format: 'date-time' }),
      action: Type.String(),
      actor_id: Type.Union([Type.Integer(), Type.Null()]),
      email: Type.Union([Type.String(), Type.Null()]),
      address: Type.Union([Type.String(), Type.Null()]),
      request_id: Type.Union([Type.String(), Type.Null()]),
      details: Type.Record(Type.String(), Type.Unknown()),
    }),
  ),
  // pass as ?before= for the next page; null on the last page
  next_before: Type.Union([Type.Integer(), Type.Null()]),
});

// The page size is never refused but falls back to the default. Its range is the schema's
// minimum, maximum and default, written once here, and the description and the handler read
// it (TypeBox's types do not keep a schema's options, hence the constant).
const LIMIT = { minimum: 1, maximum: 100, default: 50 } as const;
const AuditQuery = withPartReader(
  Type.Object({
    before: Type.Optional(
      Type.Integer({ description: 'next_before of the previous page; anything but a positive id is 400' }),
    ),
    limit: Type.Optional(
      Type.Integer({
        ...LIMIT,
        description: `outside ${LIMIT.minimum}-${LIMIT.maximum} (or not a number) means ${LIMIT.default}`,
      }),
    ),
  }),
  readAuditQuery,
);

// Go's ParseInt for the cursor (400), Atoi for the limit (a fallback, never an error).
function readAuditQuery(query: RawPart): { before: string | undefined; limit: number } {
  const before = first(query.before);
  if (before !== undefined && (!/^\d{1,19}$/.test(before) || BigInt(before) > INT64_MAX))
    throw new BadRequestError('invalid before cursor');
  const limitText = first(query.limit);
  const asked = limitText !== undefined && /^\d{1,3}$/.test(limitText) ? Number(limitText) : 0;
  return { before, limit: asked >= LIMIT.minimum && asked <= LIMIT.maximum ? asked : LIMIT.default };
}

export function auditRoutes(api: FastifyInstance, db: Db): void {
  api.get(
    '/admin/audit',
    {
      onRequest: requireAdmin,
      schema: {
        operationId: 'listAuditEvents',
        summary: 'The audit trail, newest first (admins with a full credential)',
        tags: ['admin'],
        security: BEARER_REQUIRED,
        querystring: AuditQuery,
        response: { 200: response(AuditPage, 'A page of audit events'), ...apiErrors(400, 401, 403, 500) },
      },
    },
    async (request) => {
      const { events, nextBefore } = await listEvents(db, queryOf(request, AuditQuery));
      return {
        data: events.map((e) => ({
          id: e.id,
          created_at: e.createdAt.toISOString(),
          action: e.action,
          actor_id: e.actorId,
          email: e.email,
          address: e.address,
          request_id: e.requestId,
          details: e.details,
        })),
        next_before: nextBefore,
      };
    },
  );
}
