// The callback tables: the durable intake (callback_batches) and the online objects
// (callback_objects). Times are PostgreSQL's clock throughout, so every instance ages
// objects and leases by the same clock.
import type { Queryable } from '../platform/db.ts';
import type { CallbackBatch } from './callback.ts';

// Several callbacks in one statement, in the order given: each as the text of its array
// ('{1,2,3}'), since a parameter cannot be an array of arrays of different lengths.
const INSERT_BATCHES = `
  INSERT INTO callback_batches (object_ids)
  SELECT b.ids::bigint[] FROM unnest($1::text[]) WITH ORDINALITY AS b(ids, n) ORDER BY b.n`;

// Oldest first, at most $1 callbacks and, past the first, only while their ids fit in $4 (the
// room the claimer has for lookups): what a claim holds is bounded by ids, not by callbacks
// (50 callbacks of 10,000 ids were half a million lookups at once). A callback past the TTL
// counts for nothing: it is dropped, not looked up. Rows another worker is claiming right
// now are skipped, not waited for.
const CLAIM_BATCHES = `
  WITH c AS (
    SELECT id, CASE WHEN received_at < now() - $3 * interval '1 millisecond' THEN 0
                    ELSE cardinality(object_ids) END AS ids
      FROM callback_batches
     WHERE claimed_until IS NULL OR claimed_until < now()
     ORDER BY id LIMIT $1
     FOR UPDATE SKIP LOCKED
  ), taken AS (
    SELECT id FROM (SELECT id, row_number() OVER w AS n, sum(ids) OVER w AS ids FROM c
                    WINDOW w AS (ORDER BY id)) s
     WHERE n = 1 OR ids <= $4
  )
  UPDATE callback_batches b
     SET claimed_until = now() + $2 * interval '1 millisecond', attempts = b.attempts + 1
    FROM taken
   WHERE b.id = taken.id
  RETURNING b.id, b.object_ids, b.received_at, b.attempts,
            b.received_at < now() - $3 * interval '1 millisecond' AS expired`;

const RENEW_LEASES = `
  UPDATE callback_batches SET claimed_until = now() + $2 * interval '1 millisecond'
   WHERE id = ANY($1::bigint[])`;

const RELEASE_BATCHES = `
  UPDATE callback_batches SET claimed_until = NULL WHERE id = ANY($1::bigint[])`;

const DELETE_BATCH = 'DELETE FROM callback_batches WHERE id = $1';

// The online objects of a callback go in with one multi-row upsert. The ids come sorted, so
// concurrent upserts lock rows in the same order and cannot deadlock; last_seen never
// moves backwards. In the same statement (one round trip, one commit) the callback leaves
// the intake, or goes back to it with the ids still unresolved, to be claimed again after
// the delay.
const UPSERT_OBJECTS = `
  INSERT INTO callback_objects (object_id, last_seen)
  SELECT unnest($2::bigint[]), $3
  ON CONFLICT (object_id) DO UPDATE
     SET last_seen = GREATEST(callback_objects.last_seen, EXCLUDED.last_seen)
   WHERE callback_objects.last_seen < EXCLUDED.last_seen`;

const FINISH_BATCH = `
  WITH upserted AS (${UPSERT_OBJECTS})
  DELETE FROM callback_batches WHERE id = $1`;

const REQUEUE_BATCH = `
  WITH upserted AS (${UPSERT_OBJECTS})
  UPDATE callback_batches
     SET object_ids = $4::bigint[], claimed_until = now() + $5 * interval '1 millisecond'
   WHERE id = $1`;

// A transaction-scoped advisory lock: of the instances sweeping at the same moment, one
// deletes and the others skip; the lock goes with the statement's transaction.
const SWEEP_LOCK_ID = 0x63616c6c; // "call"
const DELETE_EXPIRED = `
  WITH sweeper AS (SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK_ID}) AS locked)
  DELETE FROM callback_objects
   WHERE (SELECT locked FROM sweeper) AND last_seen < now() - $1 * interval '1 millisecond'`;

const BACKLOG = `
  SELECT count(*) AS callbacks,
         COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0)::float8 AS oldest_seconds
    FROM callback_batches`;

const LIST_OBJECTS = `
  SELECT object_id, last_seen FROM callback_objects ORDER BY object_id LIMIT $1`;

const COUNT_OBJECTS = 'SELECT count(*) AS count FROM callback_objects';

type BatchRow = { id: number; object_ids: string[]; received_at: Date; attempts: number; expired: boolean };

export async function insertBatches(db: Queryable, batches: readonly (readonly number[])[]): Promise<void> {
  await db.query({
    name: 'callback-insert-batches',
    text: INSERT_BATCHES,
    values: [batches.map((ids) => `{${ids.join(',')}}`)],
  });
}

// Callbacks older than ttlMs come back marked expired (by PostgreSQL's clock, like
// everything else about time here).
export async function claimBatches(
  db: Queryable,
  limits: Readonly<{ callbacks: number; ids: number }>,
  leaseMs: number,
  ttlMs: number,
): Promise<CallbackBatch[]> {
  const { rows } = await db.query<BatchRow>({
    name: 'callback-claim-batches',
    text: CLAIM_BATCHES,
    values: [limits.callbacks, leaseMs, ttlMs, limits.ids],
  });
  // bigint[] comes back as strings; the ids fit in a double (they were JSON numbers).
  return rows.map((row) => ({
    id: row.id,
    objectIds: row.object_ids.map(Number),
    receivedAt: row.received_at,
    attempts: row.attempts,
    expired: row.expired,
  }));
}

export async function renewLeases(db: Queryable, ids: readonly number[], leaseMs: number): Promise<void> {
  if (ids.length > 0)
    await db.query({ name: 'callback-renew-leases', text: RENEW_LEASES, values: [ids, leaseMs] });
}

export async function releaseBatches(db: Queryable, ids: readonly number[]): Promise<void> {
  if (ids.length > 0)
    await db.query({ name: 'callback-release-batches', text: RELEASE_BATCHES, values: [ids] });
}

export async function deleteBatch(db: Queryable, id: number): Promise<void> {
  await db.query({ name: 'callback-delete-batch', text: DELETE_BATCH, values: [id] });
}

// Stores the callback's online objects as seen at its arrival, then deletes the callback,
// or, when some ids are unresolved, hands it back with those ids after `retryDelayMs`.
export async function finishBatch(
  db: Queryable,
  batch: { id: number; receivedAt: Date },
  online: readonly number[],
  unresolved: readonly number[],
  retryDelayMs: number,
): Promise<void> {
  if (unresolved.length === 0) {
    await db.query({
      name: 'callback-finish-batch',
      text: FINISH_BATCH,
      values: [batch.id, online, batch.receivedAt],
    });
  } else {
    await db.query({
      name: 'callback-requeue-batch',
      text: REQUEUE_BATCH,
      values: [batch.id, online, batch.receivedAt, unresolved, retryDelayMs],
    });
  }
}

export async function deleteExpiredObjects(db: Queryable, ttlMs: number): Promise<number> {
  const result = await db.query({ name: 'callback-delete-expired', text: DELETE_EXPIRED, values: [ttlMs] });
  return result.rowCount ?? 0;
}

export async function selectBacklog(db: Queryable): Promise<{ callbacks: number; oldestSeconds: number }> {
  const { rows } = await db.query<{ callbacks: number; oldest_seconds: number }>(BACKLOG);
  const row = rows[0] as { callbacks: number; oldest_seconds: number };
  return { callbacks: row.callbacks, oldestSeconds: row.oldest_seconds };
}

export async function selectObjects(db: Queryable, limit: number) {
  const { rows } = await db.query<{ object_id: number; last_seen: Date }>(LIST_OBJECTS, [limit]);
  return rows.map((row) => ({ objectId: row.object_id, lastSeen: row.last_seen }));
}

export async function countObjects(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ count: number }>(COUNT_OBJECTS);
  return (rows[0] as { count: number }).count;
}
