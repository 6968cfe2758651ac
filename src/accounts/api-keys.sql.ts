// SQL for the api_keys table: a user's API keys, credentials of the account like its tokens.
import type { Queryable } from '../platform/db.ts';

export type ApiKey = {
  id: number;
  userId: number;
  name: string;
  prefix: string;
  scopes: string[];
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  createdAt: Date;
};

type ApiKeyRow = {
  id: number;
  user_id: number;
  name: string;
  prefix: string;
  scopes: string[];
  expires_at: Date | null;
  last_used_at: Date | null;
  created_at: Date;
};

function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
  };
}

const COLUMNS = 'id, user_id, name, prefix, scopes, expires_at, last_used_at, created_at';

// Only for the generation of the credential that asked: FOR SHARE waits for a password
// reset or a logout everywhere in progress, then sees its new generation, so a key asked for
// with a credential they end does not outlive them.
const INSERT = `
  INSERT INTO api_keys (user_id, name, prefix, hash, scopes, expires_at)
  SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1 AND token_generation = $7 FOR SHARE
  RETURNING ${COLUMNS}`;

const SELECT_FOR_USER = `SELECT ${COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY id`;

const SELECT_VALID_BY_HASH = `
  SELECT ${COLUMNS} FROM api_keys
  WHERE hash = $1 AND (expires_at IS NULL OR expires_at > now())`;

const DELETE_OWN = 'DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING user_id';

const DELETE_ALL_OF_USER = 'DELETE FROM api_keys WHERE user_id = $1';

// At most one write a minute per key, whichever instance sees it used.
const TOUCH = `
  UPDATE api_keys SET last_used_at = now()
  WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`;

export async function insertApiKey(
  db: Queryable,
  key: {
    userId: number;
    name: string;
    prefix: string;
    hash: Buffer;
    scopes: string[];
    expiresAt: Date | null;
  },
  generation: number,
): Promise<ApiKey | undefined> {
  const { rows } = await db.query<ApiKeyRow>(INSERT, [
    key.userId,
    key.name,
    key.prefix,
    key.hash,
    key.scopes,
    key.expiresAt,
    generation,
  ]);
  return rows[0] && toApiKey(rows[0]);
}

export async function selectApiKeysForUser(db: Queryable, userId: number): Promise<ApiKey[]> {
  const { rows } = await db.query<ApiKeyRow>(SELECT_FOR_USER, [userId]);
  return rows.map(toApiKey);
}

export async function selectValidApiKey(db: Queryable, hash: Buffer): Promise<ApiKey | undefined> {
  const { rows } = await db.query<ApiKeyRow>({
    name: 'select-valid-api-key',
    text: SELECT_VALID_BY_HASH,
    values: [hash],
  });
  return rows[0] && toApiKey(rows[0]);
}

// Whether a key of this user existed (and is now gone).
export async function deleteApiKey(db: Queryable, id: string, userId: number): Promise<boolean> {
  const { rowCount } = await db.query(DELETE_OWN, [id, userId]);
  return (rowCount ?? 0) > 0;
}

// How many keys the user had (all now gone).
export async function deleteApiKeysOfUser(db: Queryable, userId: number): Promise<number> {
  const { rowCount } = await db.query(DELETE_ALL_OF_USER, [userId]);
  return rowCount ?? 0;
}

export async function touchApiKey(db: Queryable, id: number): Promise<void> {
  await db.query({ name: 'touch-api-key', text: TOUCH, values: [id] });
}
