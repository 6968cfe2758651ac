// The broker module's table: broker_commands, one row per command message applied.
import type { Queryable } from '../platform/db.ts';

// Inserted in the command's transaction; a second delivery waits for the first's commit on the
// key and then inserts nothing.
const INSERT_COMMAND = `
  INSERT INTO broker_commands (message_id, type, user_id) VALUES ($1, $2, $3)
  ON CONFLICT (message_id) DO NOTHING
  RETURNING message_id`;

const SELECT_COMMAND = 'SELECT 1 FROM broker_commands WHERE message_id = $1';

// Whether the message id was new (false: it was applied before).
export async function insertCommand(
  db: Queryable,
  messageId: string,
  type: string,
  userId: number,
): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'insert-broker-command',
    text: INSERT_COMMAND,
    values: [messageId, type, userId],
  });
  return rowCount === 1;
}

export async function commandApplied(db: Queryable, messageId: string): Promise<boolean> {
  const { rowCount } = await db.query({
    name: 'select-broker-command',
    text: SELECT_COMMAND,
    values: [messageId],
  });
  return (rowCount ?? 0) > 0;
}
