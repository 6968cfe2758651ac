// How a module declares its flags: name, kind, default, help, rule, secret or not, and
// whether an operator may change it at run time. Each module keeps its table beside it
// (*.flags.ts); config.ts reads them all, and the types of the values come from the tables.
// Values parse the way Go's `flag` package does, so the book's command lines work unchanged.

export class ConfigError extends Error {}

// What a secret value is shown as, wherever configuration or a request is shown.
export const REDACTED = 'REDACTED';

// Query parameters whose value is a credential or stands for one (?api_key=, ?token=,
// ?access_token=, ?password=, ?code=, ?signature=...).
const SENSITIVE_PARAM = /key|token|secret|pass|pwd|auth|credential|session|sig|code|jwt|dsn|cookie/i;

// A request target as it may be logged: the path and the names of the query parameters are
// kept (they say what was asked), the value of each parameter whose name looks sensitive is
// REDACTED. Every log line's `path` field goes through it (`url` through redactUrl: pino
// serializers, logger.ts), so no module can log a credential sent in a query string.
export function redactQuery(target: unknown): unknown {
  return typeof target === 'string' ? redactedQuery(target) : target;
}

// Userinfo of a URL: up to the last @ before the path, so a password with an unescaped @
// goes whole.
const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#\s]*@/i;

// A URL as it may be shown or logged: its userinfo and its credential-looking query values
// REDACTED. The one redactor of URL values: flag values wherever configuration is shown
// (config.ts) and the log's `url` and `upstream` fields.
export function redactUrl(value: string): string {
  return redactedQuery(value.replace(URL_USERINFO, `$1${REDACTED}@`));
}

function redactedQuery(target: string): string {
  const start = target.indexOf('?');
  if (start === -1) return target;
  const query = target
    .slice(start + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      return eq !== -1 && SENSITIVE_PARAM.test(decodedName(name)) ? `${name}=${REDACTED}` : pair;
    });
  return `${target.slice(0, start)}?${query.join('&')}`;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '));
  } catch {
    return name;
  }
}

// A flag's value that cannot be converted or breaks the flag's rule; `reason` is the
// client-facing part (the runtime settings answer it as a 422 field message).
export class FlagValueError extends ConfigError {
  readonly reason: string;
  constructor(message: string, reason: string) {
    super(message);
    this.reason = reason;
  }
}

export type Kind = 'string' | 'int' | 'float' | 'bool' | 'duration';
export type FlagValue = string | number | boolean;
// Durations are milliseconds.
type TypeOf = { string: string; int: number; float: number; bool: boolean; duration: number };

// `secret`: the value is a credential. The surfaces that show configuration read this
// declaration: /debug/vars shows the command line through redactArgv, a conversion error
// leaves the value out, and a secret can never be a runtime setting (those are listed by
// the settings API, audited and logged).
// `runtime`: an operator may change it at run time under the same name (src/settings/);
// `rule` then checks the setting as it checks the start-up value (see also `feature` below).
// `shownDefault`: the default as the docs describe it when the value itself says little.
export type FlagSpec<K extends Kind = Kind> = Readonly<{
  kind: K;
  default: string;
  help: string;
  shownDefault?: string;
  secret?: true;
  runtime?: true;
  // A method, so that a table of int flags is still a table of flags.
  rule?(value: TypeOf[K]): string | undefined;
}>;

export type FlagTable = Readonly<Record<string, FlagSpec & Readonly<{ feature?: string }>>>;

export type FlagValues<T extends FlagTable> = { readonly [N in keyof T]: TypeOf[T[N]['kind']] };

type Declared<K extends Kind> = Omit<FlagSpec<K>, 'kind'>;

export const text = (spec: Declared<'string'>): FlagSpec<'string'> => ({ ...spec, kind: 'string' });
export const int = (spec: Declared<'int'>): FlagSpec<'int'> => ({ ...spec, kind: 'int' });
export const float = (spec: Declared<'float'>): FlagSpec<'float'> => ({ ...spec, kind: 'float' });
export const duration = (spec: Declared<'duration'>): FlagSpec<'duration'> => ({ ...spec, kind: 'duration' });
export const bool = (spec: Declared<'bool'>): FlagSpec<'bool'> => ({ ...spec, kind: 'bool' });
// A boolean flag that starts the feature flag `feature-<name>`; the literal name is kept, so
// that RuntimeSettings.isEnabled takes only declared features.
export const feature = <const F extends string>(
  name: F,
  spec: Declared<'bool'>,
): FlagSpec<'bool'> & Readonly<{ feature: F }> => ({ ...spec, kind: 'bool', feature: name });

// A rule from a condition and the message when it fails.
export function when<T>(ok: (value: T) => boolean, message: string): (value: T) => string | undefined {
  return (value) => (ok(value) ? undefined : message);
}

export function envName(flag: string): string {
  return `GREENLIGHT_${flag.toUpperCase().replaceAll('-', '_')}`;
}

export function check(condition: boolean, flag: string, message: string): asserts condition {
  if (!condition) throw new ConfigError(`invalid -${flag} (${envName(flag)}): ${message}`);
}

// Narrows a checked string to its literal type.
export function oneOf<T extends string>(value: string, allowed: readonly T[]): value is T {
  return allowed.some((a) => a === value);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

// Go's longest duration (2^63 - 1 ns, about 292 years): a longer one is refused as Go refuses
// it, rather than read as a huge number or Infinity that fails later in a timer or in SQL.
export const MAX_DURATION_MS = 9_223_372_036_854;

export class DurationRangeError extends RangeError {}

// A subset of Go's time.ParseDuration: "1h30m", "15m", "3s", "250ms". Returns milliseconds.
export function parseDuration(value: string): number {
  const parts = value.match(/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/)
    ? value.match(/\d+(?:\.\d+)?(?:ms|s|m|h)/g)
    : null;
  if (!parts) {
    if (value === '0') return 0;
    throw new Error('not a duration');
  }
  let total = 0;
  for (const part of parts) {
    const [, amount = '', unit = ''] = part.match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/) ?? [];
    total += Number(amount) * (DURATION_UNITS[unit] ?? 0);
  }
  if (!(total <= MAX_DURATION_MS)) throw new DurationRangeError('duration out of range');
  return total;
}

// A duration flag's bounds. Every duration reaches a timer (setTimeout fires at once past
// 2^31 - 1 ms) or SQL (statement_timeout, an interval), where a value past their limits is
// not refused at start-up but fails at each use; so each duration flag has a maximum.
export function durationRange(minMs: number, maxMs: number) {
  const shown = (ms: number) => (ms === 0 ? '0' : formatDuration(ms));
  return when(
    (ms: number) => ms >= minMs && ms <= maxMs,
    `must be between ${shown(minMs)} and ${shown(maxMs)}`,
  );
}

// Durations are shown as the flag takes them ("30s"), not in milliseconds.
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function convert(name: string, spec: FlagSpec, raw: string): FlagValue {
  const shown = spec.secret ? '' : `"${raw}" `;
  const fail = (what: string) =>
    new FlagValueError(`invalid value ${shown}for -${name} (${envName(name)}): ${what}`, what);
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'int':
      if (!/^[+-]?\d+$/.test(raw.trim())) throw fail('must be an integer');
      return Number.parseInt(raw, 10);
    case 'float': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw fail('must be a number');
      return n;
    }
    case 'bool':
      if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true;
      if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false;
      throw fail('must be a boolean');
    case 'duration':
      try {
        return parseDuration(raw);
      } catch (err) {
        if (err instanceof DurationRangeError) throw fail('is longer than any duration (about 292 years)');
        throw fail('must be a duration such as 30s, 15m or 1h');
      }
  }
}

// A flag's converted value checked by its rule; throws FlagValueError.
export function checkRule(name: string, spec: FlagSpec, value: FlagValue): FlagValue {
  const reason = spec.rule?.(value);
  if (reason !== undefined)
    throw new FlagValueError(`invalid -${name} (${envName(name)}): ${reason}`, reason);
  return value;
}

// The values of one module's flags, each checked by its rule, typed by the table.
export function readValues<T extends FlagTable>(table: T, get: (name: string) => FlagValue): FlagValues<T> {
  const values: Record<string, FlagValue> = {};
  for (const [name, spec] of Object.entries(table)) values[name] = checkRule(name, spec, get(name));
  // Each value was converted by its own spec's kind (convert), which is what FlagValues says.
  return values as FlagValues<T>;
}

const HOST_PORT = /^(\[[^\]]+\]|[^:\s]*):(\d+)$/;

// A listener's `host:port` flag: empty turns the listener off, `:port` listens on every
// interface (as Go's net.Listen does), port 0 picks a free one.
export const listenAddressRule = (
  message = 'must be host:port (port 0 picks a free one), or empty to disable the listener',
) => when((addr: string) => addr === '' || listenAddress(addr) !== null, message);

export function listenAddress(addr: string): Readonly<{ host: string; port: number }> | null {
  const hostPort = HOST_PORT.exec(addr);
  if (!hostPort || Number(hostPort[2]) > 65535) return null;
  return Object.freeze({
    host: (hostPort[1] ?? '').replace(/^\[|\]$/g, '') || '0.0.0.0',
    port: Number(hostPort[2]),
  });
}
