// An outbox (movie_events, product_events) as the streams read it, the statements generated
// from one template per table. The rows are written by the owning module in the statement of
// each change (src/platform/outbox.ts), each with the id of its transaction (xid).
//
// The delivery order is (xid, id), and a read returns only events whose transaction is older
// than every transaction still running (xid < the xmin of the statement's snapshot): those
// transactions have all ended, so no event can later appear before the last one read. A
// position in that order is its event's (xid, id); the id alone is what clients see.
import type { Queryable } from '../platform/db.ts';

export type EventRow = {
  id: string;
  xid: string;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
  // the writer's W3C trace context, when it was traced (src/platform/outbox.ts)
  trace_context: Readonly<Record<string, string>> | null;
};

export type Position = Readonly<{ xid: bigint; id: number }>;

// Before every event.
export const START: Position = { xid: 0n, id: 0 };

export type OutboxStatements = Readonly<{
  table: string;
  selectAfter: string;
  selectLast: string;
  selectResume: string;
  prune: string;
}>;

export const outboxStatements = (table: string): OutboxStatements => ({
  table,
  // `pending`: committed events wait behind a transaction still running (they are read once
  // it ends); computed under the same snapshot, so on the row of an empty batch too. It
  // compares the newest event with the horizon, one step down the index from its end: an
  // EXISTS over `xid >= horizon` was planned as a sequential scan when the statistics were
  // stale (a bulk import of 100,000 movies just before: 109 ms a read, and E1's p99 from 33
  // to 100 ms), since the planner expected a third of the table to match and found none.
  selectAfter: `
    WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
    batch AS (
      SELECT id, xid, type, payload, created_at, trace_context
      FROM ${table}
      WHERE (xid, id) > ($1::xid8, $2::bigint) AND xid < (SELECT xmin FROM horizon)
      ORDER BY xid, id
      LIMIT $3
    )
    SELECT b.id, b.xid::text AS xid, b.type, b.payload, b.created_at, b.trace_context,
           coalesce(
             (SELECT xid FROM ${table} ORDER BY xid DESC, id DESC LIMIT 1) >= (SELECT xmin FROM horizon),
             false
           ) AS pending
    FROM (VALUES (1)) AS one
    LEFT JOIN batch b ON true
    ORDER BY b.xid, b.id`,
  // Ordered by the table's columns: a bare `xid` would name the output column, its text.
  selectLast: `
    SELECT id, xid::text AS xid FROM ${table}
    WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY ${table}.xid DESC, ${table}.id DESC
    LIMIT 1`,
  // The event with the greatest id up to $1 (the id itself when it is still there) and what
  // pruning left behind.
  selectResume: `
    SELECT p.up_to::text AS up_to, p.up_to_xid::text AS up_to_xid, p.max_id::text AS max_id,
           e.id::text AS id, e.xid::text AS xid
    FROM ${table}_pruned p
    LEFT JOIN LATERAL (
      SELECT id, xid FROM ${table} WHERE id <= $1 ORDER BY id DESC LIMIT 1
    ) e ON true`,
  // Deletes a prefix of the delivery order, of events whose transactions have all ended (a
  // later event never lands inside a pruned prefix): up to the last event created before $1
  // and not after the position ($3, $4) when given (what a durable reader has not yet read),
  // at most $2 rows a statement, so a large backlog is deleted in steps that each stay within
  // the query timeout.
  prune: `
    WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
    old AS (
      SELECT xid, id FROM ${table}
      WHERE created_at < $1 AND xid < (SELECT xmin FROM horizon)
        AND ($3::xid8 IS NULL OR (xid, id) <= ($3::xid8, $4::bigint))
      ORDER BY xid DESC, id DESC
      LIMIT 1
    ),
    nth AS (
      SELECT xid, id FROM ${table} ORDER BY xid, id OFFSET $2 - 1 LIMIT 1
    ),
    cutoff AS (
      SELECT CASE WHEN nth_first THEN nth.xid ELSE old.xid END AS xid,
             CASE WHEN nth_first THEN nth.id ELSE old.id END AS id
      FROM old
      LEFT JOIN nth ON true
      CROSS JOIN LATERAL (SELECT coalesce((nth.xid, nth.id) < (old.xid, old.id), false) AS nth_first) n
    ),
    deleted AS (
      DELETE FROM ${table} WHERE (xid, id) <= (SELECT xid, id FROM cutoff) RETURNING id
    ),
    marked AS (
      UPDATE ${table}_pruned p
      SET up_to = c.id, up_to_xid = c.xid, max_id = GREATEST(p.max_id, (SELECT max(id) FROM deleted))
      FROM cutoff c
      WHERE (c.xid, c.id) > (p.up_to_xid, p.up_to)
    )
    SELECT count(*)::integer AS count FROM deleted`,
});

const toPosition = (xid: string, id: string): Position => ({ xid: BigInt(xid), id: Number(id) });

export async function selectEventsAfter(
  db: Queryable,
  sql: OutboxStatements,
  after: Position,
  limit: number,
): Promise<{ rows: EventRow[]; pending: boolean }> {
  const { rows } = await db.query<EventRow & { pending: boolean }>({
    name: `select-${sql.table}-after`,
    text: sql.selectAfter,
    values: [after.xid.toString(), after.id, limit],
  });
  return { rows: rows.filter((row) => row.id !== null), pending: rows[0]?.pending ?? false };
}

export async function selectLastPosition(db: Queryable, sql: OutboxStatements): Promise<Position> {
  const { rows } = await db.query<{ id: string; xid: string }>({
    name: `select-${sql.table}-last`,
    text: sql.selectLast,
  });
  const row = rows[0];
  return row ? toPosition(row.xid, row.id) : START;
}

// PostgreSQL's snapshot of this moment as text: `xmin:xmax:xip,xip,...`.
export async function selectSnapshot(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ snapshot: string }>({
    name: 'select-current-snapshot',
    text: 'SELECT pg_current_snapshot()::text AS snapshot',
  });
  return (rows[0] as { snapshot: string }).snapshot;
}

export type ResumeRow = Readonly<{
  // the last event pruned in delivery order, and the highest event id ever pruned
  prunedUpTo: Position;
  maxPrunedId: number;
  // the event with the greatest id up to the one asked for, if any
  event: Position | null;
}>;

export async function selectResume(db: Queryable, sql: OutboxStatements, id: number): Promise<ResumeRow> {
  const { rows } = await db.query<{
    up_to: string;
    up_to_xid: string;
    max_id: string;
    id: string | null;
    xid: string | null;
  }>({ name: `select-${sql.table}-resume`, text: sql.selectResume, values: [id] });
  const row = rows[0];
  if (!row) throw new Error(`${sql.table}_pruned has no row`);
  return {
    prunedUpTo: toPosition(row.up_to_xid, row.up_to),
    maxPrunedId: Number(row.max_id),
    event: row.id === null || row.xid === null ? null : toPosition(row.xid, row.id),
  };
}

export async function deleteEventsBefore(
  db: Queryable,
  sql: OutboxStatements,
  cutoff: Date,
  limit: number,
  keepAfter: Position | null,
): Promise<number> {
  const { rows } = await db.query<{ count: number }>(sql.prune, [
    cutoff,
    limit,
    keepAfter?.xid.toString() ?? null,
    keepAfter?.id ?? null,
  ]);
  return rows[0]?.count ?? 0;
}

// Durable readers' positions (outbox_cursors): one row per reader and outbox.
const SELECT_CURSOR = `
  SELECT xid::text AS xid, id::text AS id FROM outbox_cursors WHERE consumer = $1 AND outbox = $2`;

const UPSERT_CURSOR = `
  INSERT INTO outbox_cursors (consumer, outbox, xid, id) VALUES ($1, $2, $3::xid8, $4)
  ON CONFLICT (consumer, outbox) DO UPDATE SET xid = EXCLUDED.xid, id = EXCLUDED.id, updated_at = now()`;

// The position no reader of the outbox has gone past yet: the smallest in delivery order.
const SELECT_LOWEST_CURSOR = `
  SELECT xid::text AS xid, id::text AS id FROM outbox_cursors WHERE outbox = $1
  ORDER BY outbox_cursors.xid, outbox_cursors.id LIMIT 1`;

export async function selectCursor(
  db: Queryable,
  consumer: string,
  sql: OutboxStatements,
): Promise<Position | null> {
  const { rows } = await db.query<{ xid: string; id: string }>({
    name: 'select-outbox-cursor',
    text: SELECT_CURSOR,
    values: [consumer, sql.table],
  });
  const row = rows[0];
  return row ? toPosition(row.xid, row.id) : null;
}

export async function upsertCursor(
  db: Queryable,
  consumer: string,
  sql: OutboxStatements,
  position: Position,
): Promise<void> {
  await db.query({
    name: 'upsert-outbox-cursor',
    text: UPSERT_CURSOR,
    values: [consumer, sql.table, position.xid.toString(), position.id],
  });
}

export async function selectLowestCursor(db: Queryable, sql: OutboxStatements): Promise<Position | null> {
  const { rows } = await db.query<{ xid: string; id: string }>(SELECT_LOWEST_CURSOR, [sql.table]);
  const row = rows[0];
  return row ? toPosition(row.xid, row.id) : null;
}
