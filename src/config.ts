// The one place that reads process.env and argv. Each module declares its flags beside it
// (*.flags.ts); this file lists the modules' tables, reads every flag from the command line,
// its GREENLIGHT_* environment twin, a development .env or its default (in that order), and
// assembles one frozen Config whose type comes from the declarations.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { authConfig, authFlags } from './auth/auth.flags.ts';
import { brokerConfig, brokerFlags } from './broker/broker.flags.ts';
import { callbacksConfig, callbacksFlags } from './callbacks/callbacks.flags.ts';
import { demoFlags } from './demo/demo.flags.ts';
import { graphqlConfig, graphqlFlags } from './graphql/graphql.flags.ts';
import { grpcConfig, grpcFlags } from './grpc/grpc.flags.ts';
import { moviesFlags } from './movies/movies.flags.ts';
import { operationsConfig, operationsFlags } from './operations/operations.flags.ts';
import { ordersConfig, ordersFlags } from './orders/orders.flags.ts';
import { paymentsConfig, paymentsFlags } from './payments/payments.flags.ts';
import { databaseConfig, databaseFlags } from './platform/database.flags.ts';
import {
  ConfigError,
  check,
  checkRule,
  convert,
  envName,
  type FlagSpec,
  type FlagTable,
  type FlagValue,
  formatDuration,
  REDACTED,
  readValues,
  redactUrl,
} from './platform/flags.ts';
import { httpConfig, httpFlags } from './platform/http.flags.ts';
import { mailerConfig, mailerFlags } from './platform/mailer.flags.ts';
import { processConfig, processFlags } from './platform/process.flags.ts';
import { rateLimitConfig, rateLimitFlags } from './platform/rate-limit.flags.ts';
import { redisConfig, redisFlags } from './platform/redis.flags.ts';
import { type TracingConfig, tracingConfig, tracingFlags } from './platform/tracing.flags.ts';
import { postersConfig, postersFlags } from './posters/posters.flags.ts';
import { eventsConfig, realtimeFlags } from './realtime/realtime.flags.ts';

export { AUTH_METHODS, type AuthMethod } from './auth/auth.flags.ts';
export type { CallbacksConfig } from './callbacks/callbacks.flags.ts';
export type { OperationsConfig } from './operations/operations.flags.ts';
export type { OrdersConfig } from './orders/orders.flags.ts';
export type { PaymentsConfig } from './payments/payments.flags.ts';
export { ConfigError, type FlagValue, FlagValueError, type Kind, parseDuration } from './platform/flags.ts';
export { trustedOriginsOf } from './platform/http.flags.ts';
export type { Environment } from './platform/process.flags.ts';
export type { TracingConfig } from './platform/tracing.flags.ts';
export type { PostersConfig } from './posters/posters.flags.ts';
export type { EventsConfig } from './realtime/realtime.flags.ts';

// In the order -help lists them.
const TABLES = [
  processFlags,
  httpFlags,
  databaseFlags,
  rateLimitFlags,
  redisFlags,
  moviesFlags,
  mailerFlags,
  authFlags,
  callbacksFlags,
  paymentsFlags,
  graphqlFlags,
  grpcFlags,
  operationsFlags,
  tracingFlags,
  postersFlags,
  realtimeFlags,
  brokerFlags,
  ordersFlags,
  demoFlags,
] as const;

export type NamedFlag = FlagSpec & Readonly<{ name: string; feature?: string }>;

export const FLAGS: readonly NamedFlag[] = TABLES.flatMap((table: FlagTable) =>
  Object.entries(table).map(([name, spec]) => ({ ...spec, name })),
);

// The features whose `feature-<name>` runtime setting a flag starts (RuntimeSettings.isEnabled).
type FeatureOf<T> = T extends FlagTable
  ? { [N in keyof T]: T[N] extends { feature: infer F extends string } ? F : never }[keyof T]
  : never;
export type Feature = FeatureOf<(typeof TABLES)[number]>;

export const FEATURE_PREFIX = 'feature-';

// The names an operator may change at run time: the runtime flags, then the features.
export const SETTING_NAMES: readonly string[] = [
  ...FLAGS.filter((f) => f.runtime).map((f) => f.name),
  ...FLAGS.flatMap((f) => (f.feature ? [FEATURE_PREFIX + f.feature] : [])),
];
// Mistakes in the declarations stop every command at once, before any flag is read.
for (const flag of FLAGS) {
  if (flag.secret && (flag.runtime || flag.feature)) {
    throw new Error(`-${flag.name} is secret: it cannot be a runtime setting`);
  }
  if (FLAGS.filter((f) => f.name === flag.name).length > 1) {
    throw new Error(`-${flag.name} is declared by two modules`);
  }
}

function findFlag(name: string): NamedFlag {
  const spec = FLAGS.find((f) => f.name === name || (name === 'h' && f.name === 'help'));
  if (!spec) throw new ConfigError(`flag provided but not defined: -${name}`);
  return spec;
}

export function flagKind(name: string): FlagSpec['kind'] {
  return findFlag(name).kind;
}

// A runtime flag's value from its text, converted and checked as at start-up; throws
// FlagValueError.
export function readFlagValue(name: string, raw: string): FlagValue {
  const spec = findFlag(name);
  return checkRule(name, spec, convert(name, spec, raw));
}

export type ParsedArgs = Readonly<{ values: ReadonlyMap<string, string>; positionals: readonly string[] }>;

// Go's flag package: `-name value`, `-name=value`, `--name value`; booleans as `-name` or
// `-name=false`. Parsing of flags stops at `--`; positionals may come before, between or
// after flags so that `greenlight migrate down 1 -db-dsn=...` works too.
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const values = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const spec = findFlag(name);
    if (eq !== -1) {
      values.set(spec.name, body.slice(eq + 1));
    } else if (spec.kind === 'bool') {
      values.set(spec.name, 'true');
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`flag needs an argument: -${name}`);
      values.set(spec.name, next);
      i++;
    }
  }
  return { values, positionals };
}

// .env is a development convenience: it is read when present unless the environment
// is production, and never overrides variables that are already set.
function readDotEnv(env: NodeJS.ProcessEnv, explicitEnv: string | undefined): NodeJS.Dict<string> {
  if ((explicitEnv ?? env.GREENLIGHT_ENV) === 'production') return {};
  const path = resolve('.env');
  if (!existsSync(path)) return {};
  return parseEnv(readFileSync(path, 'utf8'));
}

export type Settings = Readonly<{ get: (name: string) => FlagValue; args: ParsedArgs }>;

export function readSettings(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Settings {
  const args = parseArgs(argv);
  const dotEnv = readDotEnv(env, args.values.get('env'));
  const get = (name: string) => {
    const spec = findFlag(name);
    const raw = args.values.get(name) ?? env[envName(name)] ?? dotEnv[envName(name)] ?? spec.default;
    return convert(name, spec, raw);
  };
  for (const spec of FLAGS) get(spec.name);
  return { get, args };
}

// A flag's value as it may be shown anywhere: never a secret flag's, and never the
// credentials of a URL (an endpoint may be given as https://user:password@host/?api_key=…).
function shownValue(name: string, value: string): string {
  if (FLAGS.find((f) => f.name === name)?.secret) return REDACTED;
  return redactUrl(value);
}

// A command line with every flag value as shownValue shows it, read the way parseArgs
// reads it (`-name value`, `-name=value`, `--name value`); anything else is kept as it is.
export function redactArgv(argv: readonly string[]): string[] {
  const shown = [...argv];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') break;
    if (!arg.startsWith('-') || arg === '-') continue;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const spec = FLAGS.find((f) => f.name === (eq === -1 ? body : body.slice(0, eq)));
    if (!spec) continue;
    if (eq !== -1) {
      shown[i] = arg.slice(0, arg.indexOf('=') + 1) + shownValue(spec.name, body.slice(eq + 1));
    } else if (spec.kind !== 'bool' && i + 1 < argv.length) {
      i++;
      shown[i] = shownValue(spec.name, argv[i] ?? '');
    }
  }
  return shown;
}

// What each runtime setting is when none is stored: its flag's start-up value, a duration
// as the flag takes it ("30s"), and a feature as its flag turns it on or off.
function settingDefaults(get: (name: string) => FlagValue): Readonly<Record<string, FlagValue>> {
  const defaults: Record<string, FlagValue> = {};
  for (const flag of FLAGS) {
    const value = get(flag.name);
    if (flag.runtime) defaults[flag.name] = flag.kind === 'duration' ? formatDuration(Number(value)) : value;
    if (flag.feature) defaults[FEATURE_PREFIX + flag.feature] = value;
  }
  return Object.freeze(defaults);
}

// Each module's part of the Config from its own flags, checked by their rules and then by
// the module's rules across flags; the first bad value stops the start, naming its flag.
function assemble(get: (name: string) => FlagValue) {
  const { env, dataDir, ...processPart } = processConfig(readValues(processFlags, get));
  return Object.freeze({
    env,
    dataDir,
    ...processPart,
    ...httpConfig(readValues(httpFlags, get), env),
    ...databaseConfig(readValues(databaseFlags, get), env),
    ...rateLimitConfig(readValues(rateLimitFlags, get)),
    ...redisConfig(readValues(redisFlags, get)),
    seedDemoData: readValues(moviesFlags, get)['seed-demo-data'],
    ...mailerConfig(readValues(mailerFlags, get)),
    ...authConfig(readValues(authFlags, get), env, dataDir),
    callbacks: callbacksConfig(readValues(callbacksFlags, get)),
    payments: paymentsConfig(readValues(paymentsFlags, get)),
    graphql: graphqlConfig(readValues(graphqlFlags, get)),
    grpc: grpcConfig(readValues(grpcFlags, get)),
    operations: operationsConfig(readValues(operationsFlags, get), env),
    tracing: tracingConfig(readValues(tracingFlags, get)),
    posters: postersConfig(readValues(postersFlags, get), dataDir),
    events: eventsConfig(readValues(realtimeFlags, get)),
    broker: brokerConfig(readValues(brokerFlags, get)),
    orders: ordersConfig(readValues(ordersFlags, get)),
    settingDefaults: settingDefaults(get),
  });
}

export type Config = ReturnType<typeof assemble>;

export function buildConfig(settings: Settings): Config {
  return assemble(settings.get);
}

// Read apart from the rest so that main.ts can start tracing before anything else loads.
export function readTracingConfig(settings: Settings): TracingConfig {
  return tracingConfig(readValues(tracingFlags, settings.get));
}

// Settings only `serve` needs: mail must really be sent outside development, while
// `migrate` and the other commands run without SMTP settings.
export function checkServeConfig(config: Config): void {
  check(
    config.smtp.host !== '' || config.env === 'development',
    'smtp-host',
    `is required when -env is ${config.env}`,
  );
}

export function usage(): string {
  const lines = FLAGS.map((f) => {
    const def = f.default === '' ? '' : ` (default ${f.default})`;
    // The help is the docs' markdown: no backticks, and a link's text without its target.
    const help = f.help.replaceAll('`', '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    return `  -${f.name} ${f.kind === 'bool' ? '' : f.kind}\n\t${help}${def} [${envName(f.name)}]`;
  });
  return [
    'Usage: greenlight <command> [flags]',
    '',
    'Commands:',
    '  serve                         run the API server (default)',
    '  migrate up|down N|down -all|goto V|version|force V|create NAME',
    '  seed movies [-count N]        insert sample movies',
    '  users grant EMAIL PERMISSION...   give permissions (movies:read, movies:write, metrics:view)',
    '  users revoke EMAIL PERMISSION...  take permissions away',
    "  users role EMAIL admin|user   set the products API role (ends the user's JWTs)",
    '  config list | get NAME | set NAME VALUE | unset NAME   runtime settings of every instance',
    '  tasks list | run NAME         scheduled tasks and their last runs; run one now',
    '  orders list [STATUS] | show ID | retry ID   orders, one with its history; enqueue its step again',
    '  jwt rotate                    with -jwt-alg EdDSA: a new signing key; expired keys removed',
    "  demo cors [-demo-port 9000]   serve the book's CORS demo pages",
    '  openapi [callbacks]           print the OpenAPI 3.1 document (of the callback listener)',
    '  callbacks                     run the callback service alone (POST /callback)',
    '  callbacks upstream            a stand-in for the upstream /objects/{id} service',
    "  callbacks client              post callbacks like the task's client",
    '  payments stand-in             a stand-in payment provider (-addr, -decline-rate, -error-rate, -lost-rate, -latency)',
    "  compile-cache                 compile every module into Node's compile cache, ahead of a start",
    '',
    'Flags:',
    ...lines,
  ].join('\n');
}
