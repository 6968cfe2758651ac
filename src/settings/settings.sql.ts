// The settings table. Every change sends a NOTIFY on SETTINGS_CHANNEL in its transaction,
// so every instance hears of it exactly when it commits.
import type pg from 'pg';
import type { Queryable } from '../platform/db.ts';

export const SETTINGS_CHANNEL = 'greenlight_settings';

export type StoredSetting = Readonly<{
  name: string;
  value: unknown;
  updatedAt: Date;
  updatedBy: string;
}>;

type SettingRow = { name: string; value: unknown; updated_at: Date; updated_by: string };

const SELECT_ALL = 'SELECT name, value, updated_at, updated_by FROM settings ORDER BY name';

// Locks the row (when there is one) so that concurrent changes of a setting record the
// right old value each.
const SELECT_FOR_UPDATE = `
  SELECT name, value, updated_at, updated_by FROM settings WHERE name = $1 FOR UPDATE`;

const UPSERT = `
  INSERT INTO settings (name, value, updated_at, updated_by) VALUES ($1, $2, now(), $3)
  ON CONFLICT (name) DO UPDATE
     SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
  RETURNING name, value, updated_at, updated_by`;

const DELETE = 'DELETE FROM settings WHERE name = $1';

const NOTIFY = `SELECT pg_notify('${SETTINGS_CHANNEL}', $1)`;

function toSetting(row: SettingRow): StoredSetting {
  return { name: row.name, value: row.value, updatedAt: row.updated_at, updatedBy: row.updated_by };
}

// Also on the listener's own connection.
export async function selectSettings(db: Queryable | pg.Client): Promise<StoredSetting[]> {
  const { rows } = await db.query<SettingRow>(SELECT_ALL);
  return rows.map(toSetting);
}

export async function selectSettingForUpdate(db: Queryable, name: string): Promise<StoredSetting | null> {
  const { rows } = await db.query<SettingRow>(SELECT_FOR_UPDATE, [name]);
  return rows[0] ? toSetting(rows[0]) : null;
}

export async function upsertSetting(
  db: Queryable,
  name: string,
  value: unknown,
  updatedBy: string,
): Promise<StoredSetting> {
  const { rows } = await db.query<SettingRow>(UPSERT, [name, JSON.stringify(value), updatedBy]);
  return toSetting(rows[0] as SettingRow);
}

export async function deleteSetting(db: Queryable, name: string): Promise<void> {
  await db.query(DELETE, [name]);
}

export async function notifySettingChanged(db: Queryable, name: string): Promise<void> {
  await db.query(NOTIFY, [name]);
}
