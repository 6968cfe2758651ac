// Use cases of the runtime settings: list them, change one, return one to its flag. Each
// change is checked as the start-up flag is, audited and announced (NOTIFY) in one
// transaction, so an instance applies exactly the changes that committed.
import { type AuditContext, recordEvent } from '../audit/audit.ts';
import type { Config } from '../config.ts';
import { type Db, withTransaction } from '../platform/db.ts';
import { parseSetting, SETTING_NAMES, sameEffect, startupValue } from './setting.ts';
import {
  deleteSetting,
  notifySettingChanged,
  type StoredSetting,
  selectSettingForUpdate,
  selectSettings,
  upsertSetting,
} from './settings.sql.ts';

// Who changes a setting: an admin through the API, or the operator at the command line.
export type SettingActor = Readonly<{ id: number | null; email: string | null; label: string }>;

export type SettingView = Readonly<{
  name: string;
  // the stored setting, else this process's start-up value
  value: unknown;
  source: 'setting' | 'flag';
  startupValue: unknown;
  updatedAt: Date | null;
  updatedBy: string | null;
}>;

function view(config: Config, name: string, stored: StoredSetting | undefined): SettingView {
  const startup = startupValue(config, name);
  return {
    name,
    value: stored ? stored.value : startup,
    source: stored ? 'setting' : 'flag',
    startupValue: startup,
    updatedAt: stored?.updatedAt ?? null,
    updatedBy: stored?.updatedBy ?? null,
  };
}

export async function listSettings(db: Db, config: Config): Promise<SettingView[]> {
  const stored = new Map((await selectSettings(db)).map((s) => [s.name, s]));
  return SETTING_NAMES.map((name) => view(config, name, stored.get(name)));
}

export async function getSetting(db: Db, config: Config, name: string): Promise<SettingView> {
  startupValue(config, name);
  return (await listSettings(db, config)).find((s) => s.name === name) as SettingView;
}

// Stores `value` for `name`, or removes the stored value when it has the start-up value's
// effect (the setting then follows the flag again). `undefined` removes it too.
// `flagsKnown`: whether `config` holds the serving instances' flags (the API: this process is
// one of them). The command line's own flags say nothing of the servers', so from there a
// value is always stored, and the audit records no start-up value (null).
export async function changeSetting(
  db: Db,
  config: Config,
  name: string,
  value: unknown,
  actor: SettingActor,
  context: AuditContext = {},
  flagsKnown = true,
): Promise<SettingView> {
  if (value !== undefined) parseSetting(name, value);
  // Read either way: it refuses an unknown name (404).
  const flagValue = startupValue(config, name);
  const startup = flagsKnown ? flagValue : null;
  return withTransaction(db, async (client) => {
    const old = await selectSettingForUpdate(client, name);
    let stored: StoredSetting | undefined;
    if (value === undefined || (flagsKnown && sameEffect(name, value, startup))) {
      await deleteSetting(client, name);
    } else {
      stored = await upsertSetting(client, name, value, actor.label);
    }
    await recordEvent(
      client,
      'setting.change',
      {
        actorId: actor.id,
        email: actor.email,
        details: {
          name,
          from: old ? old.value : startup,
          to: stored ? stored.value : startup,
          source: stored ? 'setting' : 'flag',
          by: actor.label,
        },
      },
      context,
    );
    await notifySettingChanged(client, name);
    return view(config, name, stored);
  });
}
