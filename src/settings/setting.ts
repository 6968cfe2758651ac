// Runtime settings: what an operator may change without a restart, and how a value is
// checked. Which flags are settings is declared with the flags (`runtime`, `feature` in the
// modules' *.flags.ts). Runtime flags take the start-up flag's own value and rules (config.ts's
// readFlagValue), so `config set` accepts exactly what the command line accepts; feature
// flags are a boolean or a percentage rollout, starting at their flag's value.
import { createHash } from 'node:crypto';
import {
  type Config,
  FEATURE_PREFIX,
  type Feature,
  type FlagValue,
  FlagValueError,
  flagKind,
  readFlagValue,
  SETTING_NAMES,
  trustedOriginsOf,
} from '../config.ts';
import { NotFoundError, ValidationError } from '../platform/errors.ts';
import { isStorable, NUL_MESSAGE } from '../platform/validator.ts';

export { type Feature, SETTING_NAMES } from '../config.ts';

// On, off, or on for a stable share of users (by a hash of the user id; off for anonymous).
export type Rollout = boolean | Readonly<{ percent: number }>;

// A setting's value as the process uses it.
export type Effective = FlagValue | Rollout;

export function isSetting(name: string): boolean {
  return SETTING_NAMES.includes(name);
}

export function featureSetting(feature: Feature): string {
  return FEATURE_PREFIX + feature;
}

const KIND_WORDS = {
  string: 'a string',
  int: 'an integer',
  float: 'a number',
  bool: 'a boolean',
  duration: 'a duration string such as "30s"',
} as const;

// The JSON value given for a setting, checked and converted; throws NotFoundError for an
// unknown name and ValidationError({value}) for a bad value.
export function parseSetting(name: string, value: unknown): Effective {
  if (!isSetting(name)) throw new NotFoundError();
  if (name.startsWith(FEATURE_PREFIX)) return parseRollout(value);
  const kind = flagKind(name);
  const text =
    typeof value === 'string' && kind !== 'int' && kind !== 'float' && kind !== 'bool'
      ? value
      : (typeof value === 'number' && (kind === 'int' || kind === 'float')) ||
          (typeof value === 'boolean' && kind === 'bool')
        ? String(value)
        : undefined;
  if (text === undefined) throw new ValidationError({ value: `must be ${KIND_WORDS[kind]}` });
  // No flag takes it, and jsonb cannot store it.
  if (!isStorable(text)) throw new ValidationError({ value: NUL_MESSAGE });
  try {
    return readFlagValue(name, text);
  } catch (err) {
    if (err instanceof FlagValueError) throw new ValidationError({ value: err.reason });
    throw err;
  }
}

const ROLLOUT_MESSAGE = 'must be true, false or {"percent": N} with N an integer from 0 to 100';

function parseRollout(value: unknown): Rollout {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const percent = (value as { percent?: unknown }).percent;
    if (
      keys.length === 1 &&
      Number.isInteger(percent) &&
      (percent as number) >= 0 &&
      (percent as number) <= 100
    ) {
      return { percent: percent as number };
    }
  }
  throw new ValidationError({ value: ROLLOUT_MESSAGE });
}

// What a setting is when nothing is stored: its flag's start-up value. The name is checked
// first: settingDefaults is a plain object, whose inherited keys ("constructor") are no setting.
export function startupValue(config: Config, name: string): unknown {
  if (!isSetting(name)) throw new NotFoundError();
  return config.settingDefaults[name];
}

// Two JSON values that the process would use alike ("30s" and "30000ms", 4 and 4.0).
export function sameEffect(name: string, a: unknown, b: unknown): boolean {
  return JSON.stringify(parseSetting(name, a)) === JSON.stringify(parseSetting(name, b));
}

export function originsOf(effective: Effective): string[] {
  return trustedOriginsOf(effective as string);
}

// A user's place in a percentage rollout: the same user always lands in the same place
// for a feature, and different features spread users differently.
export function rolloutBucket(feature: string, userId: number): number {
  // SHA-256 spreads consecutive ids evenly (a simple string hash does not, in its last
  // digits), and is the same on every process and version; a microsecond a request.
  return createHash('sha256').update(`${feature}:${userId}`).digest().readUInt32BE(0) % 100;
}

export function rolloutIncludes(rollout: Rollout, feature: string, userId: number | undefined): boolean {
  if (typeof rollout === 'boolean') return rollout;
  if (rollout.percent >= 100) return true;
  return userId !== undefined && rolloutBucket(feature, userId) < rollout.percent;
}
