// SQL for the tokens table.
import type { Queryable } from '../platform/db.ts';
import type { Scope, Token } from './tokens.ts';
import { notifyIdentityChanged } from './users.sql.ts';

export async function insertToken(db: Queryable, token: Token): Promise<void> {
  await db.query('INSERT INTO tokens (hash, user_id, expiry, scope) VALUES ($1, $2, $3, $4)', [
    token.hash,
    token.userId,
    token.expiry,
    token.scope,
  ]);
}

export async function deleteTokensForUser(db: Queryable, scope: Scope, userId: number): Promise<void> {
  await db.query('DELETE FROM tokens WHERE scope = $1 AND user_id = $2', [scope, userId]);
  await notifyIdentityChanged(db, userId);
}

export async function deleteExpiredTokens(db: Queryable): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM tokens WHERE expiry < now()');
  return rowCount ?? 0;
}
