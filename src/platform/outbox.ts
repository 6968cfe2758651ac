// The write side of an event outbox (movie_events, product_events, order_events), one template
// for every table: a change statement records its event rows in the same statement, so in the
// same transaction: a rolled-back change leaves no event, and a committed one always has its
// row, with the writer's trace context.
// Each row gets the id of its transaction (the column's default, pg_current_xact_id()); the
// streams deliver in (xid, id) order and only events of transactions older than every running
// one, so writers take no shared lock and send no NOTIFY: they commit in parallel, and wake
// the streams after their commit (docs/decisions.md, "Change streams").
import { currentTraceContext } from './tracing.ts';

export type Outbox = Readonly<{
  table: string;
  // the column naming the changed record
  subjectColumn: string;
  // the first key of the subjects' advisory locks, one value per outbox
  lockKey: number;
}>;

// A condition for the WHERE of an UPDATE or DELETE of the subject `idParam` (e.g. '$1'): it
// takes a lock on that subject alone, held to commit, before the row is written. Two changes
// of one record then get their transaction ids in the order they commit: the second waits
// here before it has an id, and PostgreSQL gives a transaction its id at its first write,
// so its id is larger than that of the change it waited for. (Waiting on the row's lock
// itself is not enough: an UPDATE takes its id before it waits for the row.) Changes of
// other records never wait for it. This holds when the change is its transaction's first
// write, as every write path of the service is (one statement a transaction; an atomic import
// only inserts new records, which nobody else sees before it commits).
export const lockSubject = (outbox: Outbox, idParam: string): string =>
  `(SELECT true FROM pg_advisory_xact_lock(${outbox.lockKey}, hashint8(${idParam}::bigint)))`;

// The CTE `e` (the event rows' ids) for a statement whose changed rows are the CTE `m`;
// `payload` is an SQL expression over m, `traceParam` the parameter (e.g. '$5') that holds
// eventTraceContext(). Put after `WITH m AS (…),`.
export const recordEvents = (outbox: Outbox, type: string, payload: string, traceParam: string): string => `
  e AS (
    INSERT INTO ${outbox.table} (type, ${outbox.subjectColumn}, payload, trace_context)
    SELECT '${type}', m.id, ${payload}, ${traceParam}::jsonb FROM m
    ORDER BY m.id
    RETURNING id
  )`;

// The trace_context of the events a statement writes now: the W3C trace context of the active
// span (the request, command or job making the change), as JSON, or null when nothing is
// traced. The broker relay sends it on with each event, so the writer's trace goes on in
// whoever consumes it.
export function eventTraceContext(): string | null {
  const carrier = currentTraceContext();
  return carrier.traceparent ? JSON.stringify(carrier) : null;
}

// A condition that holds when `snapshotParam` (an earlier pg_snapshot, as text, or NULL) sees
// exactly the changes of the outbox's records that the current statement sees: the current
// snapshot sees every transaction the earlier one saw (it is not older), and no transaction
// that the earlier one did not see has an event visible now: none at or above its xmax (the
// greatest event xid, one step of an index), none of those it saw running (one lookup each),
// none pruned since. A count taken in that snapshot is then still exact, as if taken now.
// It relies on every change of the records writing its event in its own transaction
// (recordEvents). Each step is an index lookup, so a generic plan cannot turn it into a scan
// of the outbox.
export const unchangedSince = (outbox: Outbox, snapshotParam: string): string => {
  const then = `${snapshotParam}::pg_snapshot`;
  return `(
    pg_snapshot_xmax(${then}) <= pg_snapshot_xmax(pg_current_snapshot())
    AND NOT EXISTS (
      SELECT 1 FROM pg_snapshot_xip(pg_current_snapshot()) AS running(xid)
      WHERE pg_visible_in_snapshot(running.xid, ${then})
    )
    AND coalesce((SELECT max(xid) FROM ${outbox.table}), '0') < pg_snapshot_xmax(${then})
    AND NOT EXISTS (
      SELECT 1 FROM pg_snapshot_xip(${then}) AS running(xid)
      WHERE EXISTS (SELECT 1 FROM ${outbox.table} e WHERE e.xid = running.xid)
    )
    AND (SELECT up_to_xid FROM ${outbox.table}_pruned) < pg_snapshot_xmin(${then}))`;
};
