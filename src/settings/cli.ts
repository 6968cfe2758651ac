// `greenlight config list | get NAME | set NAME VALUE | unset NAME`: the runtime settings
// from the command line, on the database of the running instances (they apply a change
// within a second). VALUE is read as JSON when it is JSON (8, true, {"percent": 25}) and as
// a string otherwise (debug, 30s, "https://a.example https://b.example").
import { userInfo } from 'node:os';
import { type Config, ConfigError } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { NotFoundError, ValidationError } from '../platform/errors.ts';
import { changeSetting, getSetting, listSettings, type SettingView } from './settings.ts';

export const CONFIG_USAGE = 'usage: greenlight config list | get NAME | set NAME VALUE | unset NAME';

export const CONFIG_ARITY: Readonly<Record<string, number>> = { list: 0, get: 1, set: 2, unset: 1 };

function cliValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// The command runs with its own flags, not the servers': a value no setting overrides is what
// this command's flags and environment give, and each server may start with another.
const NOT_STORED = "no setting: each server's own start-up flag; shown: this command's";

function line(s: SettingView): string {
  const origin =
    s.source === 'setting' ? `set by ${s.updatedBy} at ${s.updatedAt?.toISOString()}` : NOT_STORED;
  return `${s.name}\t${JSON.stringify(s.value)}\t(${origin})`;
}

export async function configCommand(
  db: Db,
  config: Config,
  [action, name = '', text = '']: readonly string[],
  print: (text: string) => void,
): Promise<void> {
  const actor = { id: null, email: null, label: `cli:${userInfo().username}` };
  try {
    switch (action) {
      case 'list':
        for (const setting of await listSettings(db, config)) print(line(setting));
        return;
      case 'get': {
        const setting = await getSetting(db, config, name);
        print(setting.source === 'setting' ? JSON.stringify(setting.value) : line(setting));
        return;
      }
      case 'set':
        print(line(await changeSetting(db, config, name, cliValue(text), actor, {}, false)));
        return;
      case 'unset':
        print(line(await changeSetting(db, config, name, undefined, actor, {}, false)));
        return;
    }
  } catch (err) {
    if (err instanceof NotFoundError) throw new ConfigError(`unknown setting "${name}"`);
    if (err instanceof ValidationError) {
      throw new ConfigError(`invalid value ${text} for ${name}: ${err.fields.value}`);
    }
    throw err;
  }
}
