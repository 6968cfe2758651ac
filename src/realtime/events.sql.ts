// The movie_events outbox as the streams read it. The rows are written by the movies module
// (src/movies/movies.sql.ts) in the statement of each change.
import type { Queryable } from '../platform/db.ts';

export type EventRow = {
  id: string;
  type: string;
  payload: Record<string, unknown>;
  created_at: Date;
};

const SELECT_EVENTS_AFTER = `
  SELECT id, type, payload, created_at
  FROM movie_events
  WHERE id > $1
  ORDER BY id
  LIMIT $2`;

const SELECT_LAST_ID = 'SELECT coalesce(max(id), 0)::text AS id FROM movie_events';

const SELECT_PRUNED_UP_TO = 'SELECT up_to::text AS up_to FROM movie_events_pruned';

// By id, not by time alone: the pruned events are always a prefix of the ids, so "pruned up to
// N" means exactly that no event at or below N can be resumed from. At most $2 rows a
// statement, so a large backlog is deleted in steps that each stay within the query timeout.
const PRUNE_EVENTS = `
  WITH old AS (
    SELECT max(id) AS id FROM movie_events WHERE created_at < $1
  ),
  cutoff AS (
    SELECT CASE WHEN old.id IS NULL THEN NULL
                ELSE LEAST(old.id, (SELECT id FROM movie_events ORDER BY id OFFSET $2 - 1 LIMIT 1))
           END AS id
    FROM old
  ),
  deleted AS (
    DELETE FROM movie_events WHERE id <= (SELECT id FROM cutoff) RETURNING id
  ),
  marked AS (
    UPDATE movie_events_pruned SET up_to = GREATEST(up_to, (SELECT id FROM cutoff))
    WHERE (SELECT id FROM cutoff) IS NOT NULL
  )
  SELECT count(*)::integer AS count FROM deleted`;

export async function selectEventsAfter(db: Queryable, afterId: number, limit: number): Promise<EventRow[]> {
  const { rows } = await db.query<EventRow>({
    name: 'select-movie-events-after',
    text: SELECT_EVENTS_AFTER,
    values: [afterId, limit],
  });
  return rows;
}

export async function selectLastEventId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ id: string }>(SELECT_LAST_ID);
  return Number(rows[0]?.id ?? 0);
}

export async function selectPrunedUpTo(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ up_to: string }>(SELECT_PRUNED_UP_TO);
  return Number(rows[0]?.up_to ?? 0);
}

export async function deleteEventsBefore(db: Queryable, cutoff: Date, limit: number): Promise<number> {
  const { rows } = await db.query<{ count: number }>(PRUNE_EVENTS, [cutoff, limit]);
  return rows[0]?.count ?? 0;
}
