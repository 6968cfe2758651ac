// SQL for the tokens table.
import type { Queryable } from '../platform/db.ts';
import { SCOPES, type Scope, type Token } from './tokens.ts';
import { notifyIdentityChanged } from './users.sql.ts';

export async function insertToken(db: Queryable, token: Token): Promise<void> {
  await db.query({
    name: 'insert-token',
    text: 'INSERT INTO tokens (hash, user_id, expiry, scope) VALUES ($1, $2, $3, $4)',
    values: [token.hash, token.userId, token.expiry, token.scope],
  });
}

// A session token for a user whose credentials are those that were checked (the
// generation read with the password): FOR SHARE waits for a password reset or a logout
// everywhere in progress, then sees its new generation, so no token issued from the old
// password outlives them. False when the generation has moved on.
const INSERT_SESSION_TOKEN = `
  INSERT INTO tokens (hash, user_id, expiry, scope)
  SELECT $1, id, $3, $4 FROM users WHERE id = $2 AND token_generation = $5 FOR SHARE`;

export async function insertSessionToken(db: Queryable, token: Token, generation: number): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'insert-session-token',
    text: INSERT_SESSION_TOKEN,
    values: [token.hash, token.userId, token.expiry, token.scope, generation],
  });
  return rowCount === 1;
}

export async function deleteTokensForUser(db: Queryable, scope: Scope, userId: number): Promise<void> {
  await db.query({
    name: 'delete-user-tokens',
    text: 'DELETE FROM tokens WHERE scope = $1 AND user_id = $2',
    values: [scope, userId],
  });
  await notifyIdentityChanged(db, userId);
}

export async function deleteExpiredTokens(db: Queryable): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM tokens WHERE expiry < now()');
  return rowCount ?? 0;
}

// Live authentication tokens (sessions), and how many were issued in the last day (a token's
// expiry less the scope's lifetime is when it was issued).
const TOKEN_STATS = `
  SELECT count(*) AS live,
         count(*) FILTER (WHERE expiry - $1::interval > now() - interval '24 hours') AS issued_last_day
  FROM tokens WHERE scope = 'authentication' AND expiry > now()`;

export async function selectTokenStats(db: Queryable): Promise<{ live: number; issuedLastDay: number }> {
  const { rows } = await db.query<{ live: number; issued_last_day: number }>(TOKEN_STATS, [
    `${SCOPES.authentication.ttlMs} milliseconds`,
  ]);
  const row = rows[0] as { live: number; issued_last_day: number };
  return { live: row.live, issuedLastDay: row.issued_last_day };
}
