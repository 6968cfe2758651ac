// The audit trail: who did what, from where, in which request. Modules record through
// recordEvent; admins read it through GET /api/v1/admin/audit.

import type { Queryable } from '../platform/db.ts';
import { INT64_MAX } from '../platform/request.ts';
import { type AuditEvent, insertAuditEvent, selectAuditPage } from './audit.sql.ts';

export type { AuditEvent } from './audit.sql.ts';

export const AUDIT_ACTIONS = [
  'login.success',
  'login.failure',
  'user.register',
  'apikey.create',
  'apikey.revoke',
  'role.change',
  'permission.grant',
  'permission.revoke',
  'logout.all',
  'setting.change',
  'identity.link',
  'identity.unlink',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

// Where a request came from; empty for the command line.
export type AuditContext = Readonly<{ address?: string; requestId?: string }>;

export function recordEvent(
  db: Queryable,
  action: AuditAction,
  event: { actorId?: number | null; email?: string | null; details?: Record<string, unknown> },
  context: AuditContext = {},
): Promise<void> {
  return insertAuditEvent(db, {
    action,
    actorId: event.actorId ?? null,
    email: event.email ?? null,
    address: context.address ?? null,
    requestId: context.requestId ?? null,
    details: event.details ?? {},
  });
}

const NEWEST = INT64_MAX.toString();

// Keyset pagination: `before` is the last id of the previous page (none: the newest).
export async function listEvents(
  db: Queryable,
  page: { before?: string; limit: number },
): Promise<{ events: AuditEvent[]; nextBefore: number | null }> {
  const events = await selectAuditPage(db, page.before ?? NEWEST, page.limit);
  return { events, nextBefore: events.length === page.limit ? (events.at(-1) as AuditEvent).id : null };
}

export function contextOf(request: { ip: string; id: string }): AuditContext {
  return { address: request.ip, requestId: request.id };
}
