// SQL for the audit_events table.
import type { Queryable } from '../platform/db.ts';

export type AuditEvent = {
  id: number;
  createdAt: Date;
  action: string;
  actorId: number | null;
  email: string | null;
  address: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
};

type AuditRow = {
  id: number;
  created_at: Date;
  action: string;
  actor_id: number | null;
  email: string | null;
  address: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
};

const INSERT = `
  INSERT INTO audit_events (action, actor_id, email, address, request_id, details)
  VALUES ($1, $2, $3, $4, $5, $6)`;

// Newest first, strictly before the cursor.
const SELECT_PAGE = `
  SELECT id, created_at, action, actor_id, email, address, request_id, details
  FROM audit_events
  WHERE id < $1
  ORDER BY id DESC
  LIMIT $2`;

export async function insertAuditEvent(
  db: Queryable,
  event: Omit<AuditEvent, 'id' | 'createdAt'>,
): Promise<void> {
  await db.query({
    name: 'insert-audit-event',
    text: INSERT,
    values: [event.action, event.actorId, event.email, event.address, event.requestId, event.details],
  });
}

export async function selectAuditPage(db: Queryable, before: string, limit: number): Promise<AuditEvent[]> {
  const { rows } = await db.query<AuditRow>(SELECT_PAGE, [before, limit]);
  return rows.map((row) => ({
    id: row.id,
    createdAt: row.created_at,
    action: row.action,
    actorId: row.actor_id,
    email: row.email,
    address: row.address,
    requestId: row.request_id,
    details: row.details,
  }));
}
