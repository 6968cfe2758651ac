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

function line(s: SettingView): string {
  const origin = s.source === 'setting' ? `set by ${s.updatedBy} at ${s.updatedAt?.toISOString()}` : 'flag';
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
      case 'get':
        print(JSON.stringify((await getSetting(db, config, name)).value));
        return;
      case 'set':
        print(line(await changeSetting(db, config, name, cliValue(text), actor)));
        return;
      case 'unset':
        print(line(await changeSetting(db, config, name, undefined, actor)));
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
