// The broker module's table: broker_commands, one row per command message applied, keyed by
// its sender's user and its message id (two users may send the same id, as two users may send
// the same Idempotency-Key over HTTP).
import type { Queryable } from '../platform/db.ts';

// Inserted in the command's transaction; a second delivery waits for the first's commit on the
// key and then inserts nothing.
const INSERT_COMMAND = `
  INSERT INTO broker_commands (user_id, message_id, type, fingerprint) VALUES ($1, $2, $3, $4)
  ON CONFLICT (user_id, message_id) DO NOTHING
  RETURNING message_id`;

const SELECT_COMMAND = 'SELECT fingerprint FROM broker_commands WHERE user_id = $1 AND message_id = $2';

// A command applied before: the fingerprint of what it carried (null for a row written before
// fingerprints were kept, migration 000029).
export type AppliedCommand = Readonly<{ fingerprint: Buffer | null }>;

// Whether the message id was new for the user (false: it was applied before).
export async function insertCommand(
  db: Queryable,
  userId: number,
  messageId: string,
  type: string,
  fingerprint: Buffer,
): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'insert-broker-command',
    text: INSERT_COMMAND,
    values: [userId, messageId, type, fingerprint],
  });
  return rowCount === 1;
}

export async function selectCommand(
  db: Queryable,
  userId: number,
  messageId: string,
): Promise<AppliedCommand | undefined> {
  const { rows } = await db.query<AppliedCommand>({
    name: 'select-broker-command',
    text: SELECT_COMMAND,
    values: [userId, messageId],
  });
  return rows[0];
}
