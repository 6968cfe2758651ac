// An outbox (movie_events, product_events) as the streams read it, the statements generated
// from one template per table. The rows are written by the owning module in the statement of
// each change (src/platform/outbox.ts).
import type { Queryable } from '../platform/db.ts';

export type EventRow = {
  id: string;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
};

export type OutboxStatements = Readonly<{
  table: string;
  selectAfter: string;
  selectLastId: string;
  selectPrunedUpTo: string;
  prune: string;
}>;

// By id, not by time alone: the pruned events are always a prefix of the ids, so "pruned up to
// N" means exactly that no event at or below N can be resumed from. At most $2 rows a
// statement, so a large backlog is deleted in steps that each stay within the query timeout.
export const outboxStatements = (table: string): OutboxStatements => ({
  table,
  selectAfter: `
    SELECT id, type, payload, created_at
    FROM ${table}
    WHERE id > $1
    ORDER BY id
    LIMIT $2`,
  selectLastId: `SELECT coalesce(max(id), 0)::text AS id FROM ${table}`,
  selectPrunedUpTo: `SELECT up_to::text AS up_to FROM ${table}_pruned`,
  prune: `
    WITH old AS (
      SELECT max(id) AS id FROM ${table} WHERE created_at < $1
    ),
    cutoff AS (
      SELECT CASE WHEN old.id IS NULL THEN NULL
                  ELSE LEAST(old.id, (SELECT id FROM ${table} ORDER BY id OFFSET $2 - 1 LIMIT 1))
             END AS id
      FROM old
    ),
    deleted AS (
      DELETE FROM ${table} WHERE id <= (SELECT id FROM cutoff) RETURNING id
    ),
    marked AS (
      UPDATE ${table}_pruned SET up_to = GREATEST(up_to, (SELECT id FROM cutoff))
      WHERE (SELECT id FROM cutoff) IS NOT NULL
    )
    SELECT count(*)::integer AS count FROM deleted`,
});

export async function selectEventsAfter(
  db: Queryable,
  sql: OutboxStatements,
  afterId: number,
  limit: number,
): Promise<EventRow[]> {
  const { rows } = await db.query<EventRow>({
    name: `select-${sql.table}-after`,
    text: sql.selectAfter,
    values: [afterId, limit],
  });
  return rows;
}

export async function selectLastEventId(db: Queryable, sql: OutboxStatements): Promise<number> {
  const { rows } = await db.query<{ id: string }>(sql.selectLastId);
  return Number(rows[0]?.id ?? 0);
}

export async function selectPrunedUpTo(db: Queryable, sql: OutboxStatements): Promise<number> {
  const { rows } = await db.query<{ up_to: string }>(sql.selectPrunedUpTo);
  return Number(rows[0]?.up_to ?? 0);
}

export async function deleteEventsBefore(
  db: Queryable,
  sql: OutboxStatements,
  cutoff: Date,
  limit: number,
): Promise<number> {
  const { rows } = await db.query<{ count: number }>(sql.prune, [cutoff, limit]);
  return rows[0]?.count ?? 0;
}
