// The write side of an event outbox (movie_events, product_events), one template for every
// table: a change statement records its event rows and notifies listeners in the same
// statement, so in the same transaction: a rolled-back change leaves no event, and a committed
// one always has its row (the NOTIFY itself is only delivered at commit).
// The statement takes a transaction-level advisory lock (one key per outbox) before its event
// rows get their ids, so writers of one outbox commit one at a time in id order: a reader that
// sees event N has seen every committed event below N (docs/decisions.md, "Change streams").
export type Outbox = Readonly<{
  table: string;
  // the column naming the changed record
  subjectColumn: string;
  lockKey: number;
  channel: string;
}>;

// CTEs `events_lock` and `e` (the event rows' ids) for a statement whose changed rows are the
// CTE `m`; `payload` is an SQL expression over m. Put after `WITH m AS (…),`.
export const recordEvents = (outbox: Outbox, type: string, payload: string): string => `
  events_lock AS (SELECT pg_advisory_xact_lock(${outbox.lockKey})),
  e AS (
    INSERT INTO ${outbox.table} (type, ${outbox.subjectColumn}, payload)
    SELECT '${type}', m.id, ${payload} FROM m, events_lock
    ORDER BY m.id
    RETURNING id
  )`;

// A select-list expression over `e`: wakes the listeners with the event's id.
export const notifyEvent = (outbox: Outbox): string => `pg_notify('${outbox.channel}', e.id::text)`;
