// SQL for the permissions and users_permissions tables.
import type { Queryable } from '../platform/db.ts';
import { notifyIdentityChanged } from './users.sql.ts';

export class UnknownPermissionError extends Error {}

export async function selectPermissionsForUser(db: Queryable, userId: number): Promise<string[]> {
  const { rows } = await db.query<{ code: string }>(
    `SELECT permissions.code
     FROM permissions
     INNER JOIN users_permissions ON users_permissions.permission_id = permissions.id
     WHERE users_permissions.user_id = $1
     ORDER BY permissions.code`,
    [userId],
  );
  return rows.map((r) => r.code);
}

// Grants codes to a user; granting one it already has is not an error.
export async function grantPermissions(
  db: Queryable,
  userId: number,
  codes: readonly string[],
): Promise<void> {
  const { rows } = await db.query<{ code: string }>('SELECT code FROM permissions WHERE code = ANY($1)', [
    codes,
  ]);
  const unknown = codes.filter((c) => !rows.some((r) => r.code === c));
  if (unknown.length > 0) throw new UnknownPermissionError(`unknown permission(s): ${unknown.join(', ')}`);
  await db.query(
    `INSERT INTO users_permissions (user_id, permission_id)
     SELECT $1, permissions.id FROM permissions WHERE permissions.code = ANY($2)
     ON CONFLICT DO NOTHING`,
    [userId, codes],
  );
  await notifyIdentityChanged(db, userId);
}

export async function revokePermissions(
  db: Queryable,
  userId: number,
  codes: readonly string[],
): Promise<void> {
  await db.query(
    `DELETE FROM users_permissions
     WHERE user_id = $1 AND permission_id IN (SELECT id FROM permissions WHERE code = ANY($2))`,
    [userId, codes],
  );
  await notifyIdentityChanged(db, userId);
}
