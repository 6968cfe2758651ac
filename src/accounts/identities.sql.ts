// SQL for the oidc_identities table: which local user an external provider's subject is.
import type { Queryable } from '../platform/db.ts';

export async function selectLinkedUser(
  db: Queryable,
  issuer: string,
  subject: string,
): Promise<number | undefined> {
  const { rows } = await db.query<{ user_id: number }>(
    'SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2',
    [issuer, subject],
  );
  return rows[0]?.user_id;
}

// Links the subject to the user unless it is linked already; returns the linked user, and
// whether this call made the link.
export async function linkUser(
  db: Queryable,
  issuer: string,
  subject: string,
  userId: number,
): Promise<{ userId: number; created: boolean }> {
  const { rows } = await db.query<{ user_id: number; created: boolean }>(
    `WITH inserted AS (
       INSERT INTO oidc_identities (issuer, subject, user_id) VALUES ($1, $2, $3)
       ON CONFLICT (issuer, subject) DO NOTHING
       RETURNING user_id
     )
     SELECT user_id, true AS created FROM inserted
     UNION ALL
     SELECT user_id, false AS created FROM oidc_identities WHERE issuer = $1 AND subject = $2
     LIMIT 1`,
    [issuer, subject, userId],
  );
  const row = rows[0];
  if (row) return { userId: row.user_id, created: row.created };
  // A concurrent link committed after this statement's snapshot: read it now.
  return { userId: (await selectLinkedUser(db, issuer, subject)) as number, created: false };
}

// A new link; fails (unique violation) when the subject is linked already.
export async function insertLink(
  db: Queryable,
  issuer: string,
  subject: string,
  userId: number,
): Promise<void> {
  await db.query('INSERT INTO oidc_identities (issuer, subject, user_id) VALUES ($1, $2, $3)', [
    issuer,
    subject,
    userId,
  ]);
}

export type LinkedIdentity = { issuer: string; subject: string; createdAt: Date };

export async function selectLinksOfUser(db: Queryable, userId: number): Promise<LinkedIdentity[]> {
  const { rows } = await db.query<{ issuer: string; subject: string; created_at: Date }>(
    'SELECT issuer, subject, created_at FROM oidc_identities WHERE user_id = $1 ORDER BY created_at, subject',
    [userId],
  );
  return rows.map((row) => ({ issuer: row.issuer, subject: row.subject, createdAt: row.created_at }));
}

// Whether the user had that link.
export async function deleteLink(
  db: Queryable,
  issuer: string,
  subject: string,
  userId: number,
): Promise<boolean> {
  const { rowCount } = await db.query(
    'DELETE FROM oidc_identities WHERE issuer = $1 AND subject = $2 AND user_id = $3',
    [issuer, subject, userId],
  );
  return rowCount === 1;
}

export async function deleteLinksOfUser(db: Queryable, userId: number): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM oidc_identities WHERE user_id = $1', [userId]);
  return rowCount ?? 0;
}
