// SQL for the idempotency keys of POST /api/v1/orders (order_idempotency_keys). A key is
// claimed with a transaction-scoped advisory lock, so a duplicate arriving while the first
// request's transaction is open is told at once (409) instead of waiting; the key's row, with
// the answer to replay, is written in that same transaction. An expired row counts as absent.
import type { Queryable } from '../platform/db.ts';

const KEY_LOCK = 7_235_024;

const TRY_LOCK = `SELECT pg_try_advisory_xact_lock(${KEY_LOCK}, hashtext($1::text || ':' || $2)) AS locked`;

const SELECT_KEY = `
  SELECT fingerprint, status, body FROM order_idempotency_keys
  WHERE user_id = $1 AND key = $2 AND expires_at > now()`;

// An expired row of the same key is replaced.
const UPSERT_KEY = `
  INSERT INTO order_idempotency_keys (user_id, key, fingerprint, status, body, expires_at)
  VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
  ON CONFLICT (user_id, key) DO UPDATE
  SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, body = EXCLUDED.body,
      created_at = now(), expires_at = EXCLUDED.expires_at`;

const DELETE_EXPIRED = 'DELETE FROM order_idempotency_keys WHERE expires_at <= now()';

export type StoredAnswer = Readonly<{ fingerprint: Buffer; status: number; body: unknown }>;

// false: another transaction holds the key (its request is in progress).
export async function tryLockKey(client: Queryable, userId: number, key: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>({
    name: 'lock-order-key',
    text: TRY_LOCK,
    values: [userId, key],
  });
  return rows[0]?.locked === true;
}

export async function selectAnswer(
  client: Queryable,
  userId: number,
  key: string,
): Promise<StoredAnswer | undefined> {
  const { rows } = await client.query<StoredAnswer>({
    name: 'select-order-key',
    text: SELECT_KEY,
    values: [userId, key],
  });
  return rows[0];
}

export async function storeAnswer(
  client: Queryable,
  userId: number,
  key: string,
  answer: StoredAnswer,
  ttlMs: number,
): Promise<void> {
  await client.query({
    name: 'upsert-order-key',
    text: UPSERT_KEY,
    values: [userId, key, answer.fingerprint, answer.status, answer.body, ttlMs],
  });
}

export async function deleteExpiredKeys(db: Queryable): Promise<number> {
  const { rowCount } = await db.query(DELETE_EXPIRED);
  return rowCount ?? 0;
}
