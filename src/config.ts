// The one place that reads process.env and argv. Every setting is a flag with a
// GREENLIGHT_* environment twin; flags parse the way Go's `flag` package does so the
// book's command lines work unchanged. Precedence: flag > environment > .env > default.
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';

export type Environment = 'development' | 'staging' | 'production';

export type Config = Readonly<{
  port: number;
  host: string;
  env: Environment;
  db: Readonly<{
    dsn: string;
    maxOpenConns: number;
    maxIdleConns: number;
    maxIdleTimeMs: number;
    queryTimeoutMs: number;
    migrate: boolean;
  }>;
  dataDir: string;
  embeddedDbPort: number;
  limiter: Readonly<{ rps: number; burst: number; enabled: boolean }>;
  trustedProxies: readonly string[];
  shutdownTimeoutMs: number;
  logLevel: string;
  workers: number;
  // Empty: no Redis; every feature that can use it works within the process.
  redisUrl: string;
  // With Redis: how long a cached movie or movie list may be served.
  cacheTtlMs: number;
  seedDemoData: boolean;
  // Empty host: mails are written to the log (development only).
  smtp: Readonly<{ host: string; port: number; username: string; password: string; sender: string }>;
  cors: Readonly<{ trustedOrigins: readonly string[] }>;
  limiterPerUser: boolean;
  limiterAddressCeiling: number;
  metricsLoopback: boolean;
  graphql: Readonly<{ enabled: boolean; maxDepth: number; maxCost: number }>;
  http: Readonly<{
    readHeaderTimeoutMs: number;
    readTimeoutMs: number;
    idleTimeoutMs: number;
    // 0: derived from the open-files limit at start
    maxConnections: number;
    // 0: no cap
    maxConnectionsPerIp: number;
  }>;
  auth: Readonly<{
    methods: readonly AuthMethod[];
    jwtAlgorithm: 'HS256' | 'EdDSA';
    // Empty: generated once and kept in <data-dir>/jwt-secret (development and staging).
    jwtSecret: string;
    // EdDSA key pairs (src/auth/jwt-keys.ts)
    jwtKeyDir: string;
    jwtIssuer: string;
    jwtAudience: string;
    jwtTtlMs: number;
    oidc: Readonly<{ issuer: string; audience: string; autoProvision: boolean; jwksCacheMs: number }>;
  }>;
  callbacks: CallbacksConfig;
  operations: OperationsConfig;
  tracing: TracingConfig;
  posters: PostersConfig;
  events: EventsConfig;
}>;

// Both endpoints empty: tracing is off and nothing of OpenTelemetry is registered.
export type TracingConfig = Readonly<{
  // OTLP/HTTP base URL, without /v1/traces
  otlpEndpoint: string;
  // Zipkin's span endpoint, e.g. http://localhost:9411/api/v2/spans
  zipkinEndpoint: string;
  serviceName: string;
  // Share of new traces sampled; a trace begun upstream keeps its caller's decision.
  sampleRatio: number;
}>;

export type PostersConfig = Readonly<{
  maxBytes: number;
  // Local storage's directory (<data-dir>/posters), used unless `s3` is set.
  directory: string;
  // null: local disk. An empty endpoint is AWS's own; empty keys use the SDK's default chain.
  s3: Readonly<{
    endpoint: string;
    bucket: string;
    region: string;
    accessKeyId: string;
    secretAccessKey: string;
    forcePathStyle: boolean;
  }> | null;
}>;

// Change streams (src/realtime/).
export type EventsConfig = Readonly<{
  retentionMs: number;
  heartbeatMs: number;
  pollMs: number;
  wsPingMs: number;
  // A client whose unsent bytes pass this is disconnected (slow consumer).
  maxBufferedBytes: number;
}>;

export type OperationsConfig = Readonly<{
  importMaxBytes: number;
  importWorkers: number;
  statsTimeoutMs: number;
  // Off in production unless -profiling-enabled; the routes are then not registered.
  profilingEnabled: boolean;
}>;

export type CallbacksConfig = Readonly<{
  // false: `serve` runs no callback service in this process.
  enabled: boolean;
  // null: the listener is off (the service still runs nowhere else).
  listen: Readonly<{ host: string; port: number }> | null;
  upstream: string;
  ttlMs: number;
  concurrency: number;
  upstreamTimeoutMs: number;
  leaseMs: number;
  clientIntervalMs: number;
}>;

export const AUTH_METHODS = ['token', 'jwt', 'apikey', 'oidc'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

export type Kind = 'string' | 'int' | 'float' | 'bool' | 'duration';

// `secret`: the value is a credential. The surfaces that show configuration read this
// declaration: /debug/vars shows the command line through redactArgv, a conversion error
// leaves the value out, and a secret can never be a runtime setting (those are listed by
// the settings API, audited and logged).
export type FlagSpec = Readonly<{ name: string; kind: Kind; default: string; help: string; secret?: true }>;

export const FLAGS: readonly FlagSpec[] = [
  { name: 'port', kind: 'int', default: '4000', help: 'API server port (0 picks a free one)' },
  {
    name: 'host',
    kind: 'string',
    default: '',
    help: 'address to listen on; empty: 127.0.0.1 in development (its demo account must not be reachable from the network), 0.0.0.0 otherwise',
  },
  {
    name: 'env',
    kind: 'string',
    default: 'development',
    help: 'Environment (development|staging|production)',
  },
  {
    name: 'db-dsn',
    kind: 'string',
    default: '',
    help: 'PostgreSQL DSN; empty starts the embedded PostgreSQL',
    secret: true,
  },
  { name: 'db-max-open-conns', kind: 'int', default: '25', help: 'PostgreSQL max open connections' },
  { name: 'db-max-idle-conns', kind: 'int', default: '25', help: 'PostgreSQL max idle connections' },
  { name: 'db-max-idle-time', kind: 'duration', default: '15m', help: 'PostgreSQL max connection idle time' },
  { name: 'db-query-timeout', kind: 'duration', default: '3s', help: 'server-side timeout of every query' },
  {
    name: 'db-migrate',
    kind: 'bool',
    default: 'false',
    help: 'apply pending migrations at start (always on in development and with the embedded database)',
  },
  {
    name: 'data-dir',
    kind: 'string',
    default: 'data',
    help: 'directory of the embedded PostgreSQL data and of the posters on local disk',
  },
  { name: 'embedded-db-port', kind: 'int', default: '5433', help: 'port of the embedded PostgreSQL' },
  { name: 'limiter-rps', kind: 'float', default: '2', help: 'Rate limiter maximum requests per second' },
  { name: 'limiter-burst', kind: 'int', default: '4', help: 'Rate limiter maximum burst' },
  { name: 'limiter-enabled', kind: 'bool', default: 'true', help: 'Enable rate limiter' },
  {
    name: 'trusted-proxies',
    kind: 'string',
    default: '',
    help: 'space-separated proxy addresses/CIDRs whose X-Forwarded-For is believed',
  },
  { name: 'shutdown-timeout', kind: 'duration', default: '30s', help: 'grace period for in-flight requests' },
  { name: 'log-level', kind: 'string', default: 'info', help: 'debug|info|warn|error' },
  {
    name: 'workers',
    kind: 'int',
    default: '0',
    help: 'serving processes (node:cluster); 0 = one per core in production, 1 otherwise',
  },
  {
    name: 'redis-url',
    kind: 'string',
    default: '',
    help: 'redis:// or rediss:// URL; shares rate limits, caches and events across instances (empty: each process alone)',
    secret: true,
  },
  {
    name: 'seed-demo-data',
    kind: 'bool',
    default: 'true',
    help: 'seed demo movies into an empty development database',
  },
  {
    name: 'smtp-host',
    kind: 'string',
    default: '',
    help: 'SMTP host; empty logs mails instead (development only)',
  },
  { name: 'smtp-port', kind: 'int', default: '25', help: 'SMTP port' },
  { name: 'smtp-username', kind: 'string', default: '', help: 'SMTP username' },
  { name: 'smtp-password', kind: 'string', default: '', help: 'SMTP password', secret: true },
  {
    name: 'smtp-sender',
    kind: 'string',
    default: 'Greenlight <no-reply@greenlight.local>',
    help: 'SMTP sender',
  },
  {
    name: 'cors-trusted-origins',
    kind: 'string',
    default: '',
    help: 'Trusted CORS origins (space separated)',
  },
  {
    name: 'limiter-per-user',
    kind: 'bool',
    default: 'true',
    help: 'limit authenticated requests per user instead of per IP',
  },
  {
    name: 'limiter-address-ceiling',
    kind: 'float',
    default: '4',
    help: 'with -limiter-per-user: an address may make this many times the per-user rate in all, however many accounts it uses',
  },
  {
    name: 'read-header-timeout',
    kind: 'duration',
    default: '10s',
    help: 'time a client has to send the request headers',
  },
  {
    name: 'read-timeout',
    kind: 'duration',
    default: '30s',
    help: 'time a client has to send a whole request, headers and body',
  },
  {
    name: 'idle-timeout',
    kind: 'duration',
    default: '1m',
    help: 'an idle keep-alive connection is closed after this',
  },
  {
    name: 'max-connections',
    kind: 'int',
    default: '0',
    help: 'open client connections in all, across workers; 0 = each process its open-files limit less 1024',
  },
  {
    name: 'max-connections-per-ip',
    kind: 'int',
    default: '256',
    help: 'open connections per client address in all, across workers (trusted proxies exempt); 0 = no cap',
  },
  {
    name: 'metrics-loopback',
    kind: 'bool',
    default: 'true',
    help: 'let loopback clients read /debug/vars and /metrics without the metrics:view permission',
  },
  {
    name: 'auth-methods',
    kind: 'string',
    default: 'token,jwt,apikey',
    help: `credentials accepted on every endpoint, comma separated (${AUTH_METHODS.join(', ')})`,
  },
  {
    name: 'jwt-alg',
    kind: 'string',
    default: 'HS256',
    help: 'JWT signing algorithm: HS256 (one secret) or EdDSA (Ed25519 keys, JWKS)',
  },
  {
    name: 'jwt-secret',
    kind: 'string',
    default: '',
    help: 'HS256 key of the JWTs, at least 32 bytes; required in production, else generated into <data-dir>/jwt-secret',
    secret: true,
  },
  {
    name: 'jwt-key-dir',
    kind: 'string',
    default: '',
    help: 'with -jwt-alg EdDSA: directory of the signing keys (default <data-dir>/jwt-keys)',
  },
  { name: 'jwt-issuer', kind: 'string', default: 'greenlight', help: 'iss of the JWTs issued and accepted' },
  {
    name: 'jwt-audience',
    kind: 'string',
    default: 'greenlight',
    help: 'aud of the JWTs issued and accepted',
  },
  { name: 'jwt-ttl', kind: 'duration', default: '24h', help: 'lifetime of a JWT' },
  {
    name: 'oidc-issuer',
    kind: 'string',
    default: '',
    help: 'with -auth-methods oidc: the OpenID Connect issuer URL whose access tokens are accepted',
  },
  {
    name: 'oidc-audience',
    kind: 'string',
    default: '',
    help: 'the aud the provider puts in access tokens for this API',
  },
  {
    name: 'oidc-auto-provision',
    kind: 'bool',
    default: 'false',
    help: 'make a new account for an unknown subject whose e-mail is verified and has no account yet; existing accounts are linked only by POST /v1/users/identities',
  },
  {
    name: 'oidc-jwks-cache',
    kind: 'duration',
    default: '5m',
    help: "how long the provider's keys are trusted before they are fetched again",
  },
  {
    name: 'callbacks-enabled',
    kind: 'bool',
    default: 'true',
    help: '`serve` runs the callback service (in one worker of -workers N); false leaves it to `greenlight callbacks` elsewhere',
  },
  {
    name: 'callbacks-addr',
    kind: 'string',
    default: 'localhost:9090',
    help: 'host:port of the callback listener (POST /callback); empty disables it',
  },
  {
    name: 'callbacks-upstream',
    kind: 'string',
    default: 'http://localhost:9010',
    help: 'base URL of the service answering GET /objects/{id}',
  },
  {
    name: 'callbacks-ttl',
    kind: 'duration',
    default: '30s',
    help: 'objects not seen for this long are deleted',
  },
  {
    name: 'callbacks-concurrency',
    kind: 'int',
    default: '200',
    help: 'upstream lookups in flight at once, per process',
  },
  {
    name: 'callbacks-upstream-timeout',
    kind: 'duration',
    default: '5s',
    help: 'timeout of one upstream lookup (the upstream takes up to 4.3 s)',
  },
  {
    name: 'callbacks-lease',
    kind: 'duration',
    default: '10s',
    help: 'a claimed callback whose worker stops renewing it is claimed again after this long',
  },
  {
    name: 'callbacks-client-interval',
    kind: 'duration',
    default: '5s',
    help: 'how often `callbacks client` posts',
  },
  { name: 'graphql-enabled', kind: 'bool', default: 'true', help: 'serve GraphQL at /graphql' },
  {
    name: 'graphql-max-depth',
    kind: 'int',
    default: '10',
    help: 'GraphQL operations nested deeper than this are refused before execution',
  },
  {
    name: 'graphql-max-cost',
    kind: 'int',
    default: '5000',
    help: 'GraphQL operations costing more are refused before execution (2 an object, 1 a scalar, times the page size of each list around them)',
  },
  {
    name: 'import-max-bytes',
    kind: 'int',
    default: '104857600',
    help: 'largest body POST /v1/movies/import accepts (413 beyond)',
  },
  {
    name: 'import-workers',
    kind: 'int',
    default: '4',
    help: 'batch inserts of one import in flight at once',
  },
  {
    name: 'stats-timeout',
    kind: 'duration',
    default: '500ms',
    help: 'deadline of GET /v1/stats; sources slower than this are reported as timed out',
  },
  {
    name: 'profiling-enabled',
    kind: 'bool',
    default: 'false',
    help: 'serve the profiling endpoints in production (always on in development and staging)',
  },
  {
    name: 'cache-ttl',
    kind: 'duration',
    default: '1s',
    help: 'with -redis-url: lifetime of a cached movie or movie list (the bound on staleness when an invalidation cannot reach Redis)',
  },
  {
    name: 'otel-endpoint',
    kind: 'string',
    default: '',
    help: 'OTLP/HTTP base URL spans are exported to (/v1/traces is appended); empty: no OTLP export',
  },
  {
    name: 'otel-service-name',
    kind: 'string',
    default: 'greenlight',
    help: 'service.name of the exported spans',
  },
  {
    name: 'otel-sample-ratio',
    kind: 'float',
    default: '0.01',
    help: 'share of requests (and other new traces) traced (0-1), decided before the request is read; a request with a traceparent follows its sampled flag',
  },
  {
    name: 'zipkin-endpoint',
    kind: 'string',
    default: '',
    help: 'Zipkin span URL spans are also exported to (e.g. http://localhost:9411/api/v2/spans); empty: none',
  },
  {
    name: 'poster-max-bytes',
    kind: 'int',
    default: '5242880',
    help: 'largest poster PUT /v1/movies/:id/poster accepts (413 beyond)',
  },
  {
    name: 's3-endpoint',
    kind: 'string',
    default: '',
    help: "URL of an S3-compatible store for posters; empty with -s3-bucket set is AWS's own",
  },
  {
    name: 's3-bucket',
    kind: 'string',
    default: '',
    help: 'bucket of the posters; empty keeps them on local disk under <data-dir>/posters',
  },
  { name: 's3-region', kind: 'string', default: 'us-east-1', help: 'region of the S3 bucket' },
  {
    name: 's3-access-key-id',
    kind: 'string',
    default: '',
    help: "S3 access key id; empty uses the AWS SDK's default credential chain",
    secret: true,
  },
  { name: 's3-secret-access-key', kind: 'string', default: '', help: 'S3 secret access key', secret: true },
  {
    name: 's3-force-path-style',
    kind: 'bool',
    default: 'false',
    help: 'address the bucket as <endpoint>/<bucket> (most self-hosted S3 servers) instead of <bucket>.<host>',
  },
  {
    name: 'events-retention',
    kind: 'duration',
    default: '24h',
    help: 'how long movie and product events are kept for Last-Event-ID resumes (older ones are pruned; a resume past them gets a gap event)',
  },
  {
    name: 'events-heartbeat',
    kind: 'duration',
    default: '15s',
    help: 'interval of the comment line that keeps idle SSE streams open through proxies',
  },
  {
    name: 'events-poll',
    kind: 'duration',
    default: '1s',
    help: 'safety poll of the event feeds, which catches a lost notification',
  },
  {
    name: 'ws-ping',
    kind: 'duration',
    default: '30s',
    help: 'WebSocket ping interval; a client that has not answered the previous ping is dropped',
  },
  {
    name: 'stream-max-buffered',
    kind: 'int',
    default: '1048576',
    help: 'bytes an SSE or WebSocket client may leave unread before it is disconnected as a slow consumer',
  },
  { name: 'demo-port', kind: 'int', default: '9000', help: 'port of `demo cors`' },
  {
    name: 'demo-api',
    kind: 'string',
    default: 'http://localhost:4000',
    help: 'API base URL used by `demo cors`',
  },
  { name: 'count', kind: 'int', default: '100', help: 'how many rows `seed movies` inserts' },
  { name: 'all', kind: 'bool', default: 'false', help: 'with `migrate down`: roll back every migration' },
  { name: 'version', kind: 'bool', default: 'false', help: 'Display version and exit' },
  { name: 'help', kind: 'bool', default: 'false', help: 'Show this help and exit' },
];

export class ConfigError extends Error {}

export type ParsedArgs = Readonly<{ values: ReadonlyMap<string, string>; positionals: readonly string[] }>;

function findFlag(name: string): FlagSpec {
  const spec = FLAGS.find((f) => f.name === name || (name === 'h' && f.name === 'help'));
  if (!spec) throw new ConfigError(`flag provided but not defined: -${name}`);
  return spec;
}

// Go's flag package: `-name value`, `-name=value`, `--name value`; booleans as `-name` or
// `-name=false`. Parsing of flags stops at `--`; positionals may come before, between or
// after flags so that `greenlight migrate down 1 -db-dsn=...` works too.
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const values = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
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

function envName(flag: string): string {
  return `GREENLIGHT_${flag.toUpperCase().replaceAll('-', '_')}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

// A subset of Go's time.ParseDuration: "1h30m", "15m", "3s", "250ms". Returns milliseconds.
export function parseDuration(text: string): number {
  const parts = text.match(/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/)
    ? text.match(/\d+(?:\.\d+)?(?:ms|s|m|h)/g)
    : null;
  if (!parts) {
    if (text === '0') return 0;
    throw new Error('not a duration');
  }
  let total = 0;
  for (const part of parts) {
    const [, amount, unit] = part.match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/) as RegExpMatchArray;
    total += Number(amount) * (DURATION_UNITS[unit as string] as number);
  }
  return total;
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

function convert(spec: FlagSpec, raw: string): FlagValue {
  const shown = spec.secret ? '' : `"${raw}" `;
  const fail = (what: string) =>
    new FlagValueError(`invalid value ${shown}for -${spec.name} (${envName(spec.name)}): ${what}`, what);
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
      } catch {
        throw fail('must be a duration such as 30s, 15m or 1h');
      }
  }
}

export type FlagValue = string | number | boolean;

export function trustedOriginsOf(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

// The rules of the flags an operator may also change at run time (src/settings): each is
// checked here for the start-up value and through readFlagValue for a runtime setting, so
// both paths accept exactly the same values. A rule returns what is wrong, or undefined.
const RUNTIME_RULES: Readonly<Record<string, (value: never) => string | undefined>> = {
  'limiter-rps': (rps: number) => (rps > 0 ? undefined : 'must be greater than zero'),
  'limiter-burst': (burst: number) => (burst >= 1 ? undefined : 'must be at least 1'),
  'limiter-enabled': () => undefined,
  'cors-trusted-origins': (text: string) => {
    const bad = trustedOriginsOf(text).find((origin) => !/^https?:\/\/[^/\s]+$/.test(origin));
    return bad === undefined ? undefined : `"${bad}" is not an origin like https://example.com`;
  },
  'log-level': (level: string) =>
    LOG_LEVELS.includes(level) ? undefined : `must be one of ${LOG_LEVELS.join(', ')}`,
  'callbacks-ttl': (ttlMs: number) => (ttlMs >= 1000 ? undefined : 'must be at least 1s'),
  'callbacks-concurrency': (concurrency: number) =>
    concurrency >= 1 && concurrency <= 100_000 ? undefined : 'must be between 1 and 100000',
};

export const RUNTIME_FLAGS: readonly string[] = Object.keys(RUNTIME_RULES);
for (const name of RUNTIME_FLAGS) {
  if (findFlag(name).secret) throw new Error(`-${name} is secret: it cannot be a runtime setting`);
}

export function flagKind(name: string): Kind {
  return findFlag(name).kind;
}

// A runtime flag's value from its text, converted and checked as at start-up; throws
// FlagValueError.
export function readFlagValue(name: string, raw: string): FlagValue {
  const value = convert(findFlag(name), raw);
  const reason = RUNTIME_RULES[name]?.(value as never);
  if (reason !== undefined)
    throw new FlagValueError(`invalid -${name} (${envName(name)}): ${reason}`, reason);
  return value;
}

// .env is a development convenience: it is read when present unless the environment
// is production, and never overrides variables that are already set.
function readDotEnv(env: NodeJS.ProcessEnv, explicitEnv: string | undefined): Record<string, string> {
  if ((explicitEnv ?? env.GREENLIGHT_ENV) === 'production') return {};
  const path = resolve('.env');
  if (!existsSync(path)) return {};
  return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
}

export type Settings = Readonly<{ get: (name: string) => FlagValue; args: ParsedArgs }>;

export function readSettings(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Settings {
  const args = parseArgs(argv);
  const dotEnv = readDotEnv(env, args.values.get('env'));
  const get = (name: string) => {
    const spec = findFlag(name);
    const raw = args.values.get(name) ?? env[envName(name)] ?? dotEnv[envName(name)] ?? spec.default;
    return convert(spec, raw);
  };
  for (const spec of FLAGS) get(spec.name);
  return { get, args };
}

export const REDACTED = 'REDACTED';

// A flag's value as it may be shown anywhere: never a secret flag's, and never the
// credentials of a URL (an endpoint may be given as https://user:password@host).
function shownValue(name: string, value: string): string {
  if (FLAGS.find((f) => f.name === name)?.secret) return REDACTED;
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/i, `$1${REDACTED}@`);
}

// A command line with every flag value as shownValue shows it, read the way parseArgs
// reads it (`-name value`, `-name=value`, `--name value`); anything else is kept as it is.
export function redactArgv(argv: readonly string[]): string[] {
  const shown = [...argv];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
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
      shown[i] = shownValue(spec.name, argv[i] as string);
    }
  }
  return shown;
}

// Words that mark a published example or a stand-in (compose.yaml's old default, the
// README's password), wherever they appear in a value reduced to lower-case letters and digits.
const PLACEHOLDER_WORDS = [
  'changeme',
  'replaceme',
  'yoursecret',
  'placeholder',
  'insertyour',
  'putyour',
  'example',
  'pa55word',
  'redacted',
];

// A value that stands in for a secret: it holds a placeholder word, is a few characters
// repeated (aaaa…, abcabc…, secretsecret…), or has no letter or digit at all.
function isPlaceholder(value: string): boolean {
  const normalized = value.toLowerCase().replace(/[^a-z0-9]/g, '');
  return (
    normalized === '' ||
    /^(.{1,8})\1+$/s.test(value) ||
    PLACEHOLDER_WORDS.some((word) => normalized.includes(word))
  );
}

function check(condition: boolean, flag: string, message: string): void {
  if (!condition) throw new ConfigError(`invalid -${flag} (${envName(flag)}): ${message}`);
}

const ENVIRONMENTS: readonly Environment[] = ['development', 'staging', 'production'];

// A runtime flag's start-up value, checked by its one rule.
function checked(s: Settings['get'], name: string): FlagValue {
  const value = s(name);
  const reason = RUNTIME_RULES[name]?.(value as never);
  check(reason === undefined, name, reason as string);
  return value;
}

export function buildConfig(settings: Settings): Config {
  const s = settings.get;
  const env = s('env') as string;
  check(ENVIRONMENTS.includes(env as Environment), 'env', `must be one of ${ENVIRONMENTS.join(', ')}`);
  const port = s('port') as number;
  check(port >= 0 && port <= 65535, 'port', 'must be between 0 and 65535');
  const embeddedDbPort = s('embedded-db-port') as number;
  check(embeddedDbPort > 0 && embeddedDbPort <= 65535, 'embedded-db-port', 'must be between 1 and 65535');
  const maxOpenConns = s('db-max-open-conns') as number;
  check(maxOpenConns >= 1, 'db-max-open-conns', 'must be at least 1');
  const maxIdleConns = s('db-max-idle-conns') as number;
  check(maxIdleConns >= 0, 'db-max-idle-conns', 'must not be negative');
  const queryTimeoutMs = s('db-query-timeout') as number;
  check(queryTimeoutMs > 0, 'db-query-timeout', 'must be greater than zero');
  const rps = checked(s, 'limiter-rps') as number;
  const burst = checked(s, 'limiter-burst') as number;
  const logLevel = checked(s, 'log-level') as string;
  const workers = s('workers') as number;
  check(workers >= 0 && workers <= 256, 'workers', 'must be between 0 (automatic) and 256');
  const redisUrl = s('redis-url') as string;
  check(
    redisUrl === '' || /^rediss?:\/\/[^\s]+$/.test(redisUrl),
    'redis-url',
    'must be a redis:// or rediss:// URL',
  );
  const cacheTtlMs = s('cache-ttl') as number;
  check(cacheTtlMs >= 10 && cacheTtlMs <= 3_600_000, 'cache-ttl', 'must be between 10ms and 1h');
  const addressCeiling = s('limiter-address-ceiling') as number;
  check(addressCeiling >= 1, 'limiter-address-ceiling', 'must be at least 1');
  const readHeaderTimeoutMs = s('read-header-timeout') as number;
  check(readHeaderTimeoutMs >= 1000, 'read-header-timeout', 'must be at least 1s');
  const readTimeoutMs = s('read-timeout') as number;
  check(
    readTimeoutMs >= readHeaderTimeoutMs,
    'read-timeout',
    'must not be shorter than -read-header-timeout',
  );
  const idleTimeoutMs = s('idle-timeout') as number;
  check(idleTimeoutMs >= 1000, 'idle-timeout', 'must be at least 1s');
  const maxConnections = s('max-connections') as number;
  check(maxConnections >= 0, 'max-connections', 'must not be negative');
  const maxConnectionsPerIp = s('max-connections-per-ip') as number;
  check(maxConnectionsPerIp >= 0, 'max-connections-per-ip', 'must not be negative');
  const trustedProxies = (s('trusted-proxies') as string).split(/[\s,]+/).filter(Boolean);
  for (const proxy of trustedProxies) {
    const [address = '', prefix] = proxy.split('/');
    const family = isIP(address);
    const maxPrefix = family === 6 ? 128 : 32;
    check(
      family !== 0 && (prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix)),
      'trusted-proxies',
      `"${proxy}" is not an IP address or CIDR`,
    );
  }
  const smtpHost = s('smtp-host') as string;
  const smtpPort = s('smtp-port') as number;
  check(smtpPort > 0 && smtpPort <= 65535, 'smtp-port', 'must be between 1 and 65535');
  const trustedOrigins = trustedOriginsOf(checked(s, 'cors-trusted-origins') as string);
  const authMethods = (s('auth-methods') as string).split(',').map((m) => m.trim());
  for (const method of authMethods) {
    check(
      (AUTH_METHODS as readonly string[]).includes(method),
      'auth-methods',
      `"${method}" is not one of ${AUTH_METHODS.join(', ')}`,
    );
  }
  const jwtSecret = s('jwt-secret') as string;
  check(
    jwtSecret === '' || Buffer.byteLength(jwtSecret) >= 32,
    'jwt-secret',
    'must be at least 32 bytes (256 bits) long',
  );
  // The one secret this service verifies with: a published one lets anyone sign tokens. (The
  // other secrets are credentials presented to a server that judges them itself.)
  check(
    jwtSecret === '' || !isPlaceholder(jwtSecret),
    'jwt-secret',
    'is a placeholder or published example, not a secret: set a real one (e.g. openssl rand -base64 32)',
  );
  const jwtAlgorithm = s('jwt-alg') as string;
  check(jwtAlgorithm === 'HS256' || jwtAlgorithm === 'EdDSA', 'jwt-alg', 'must be HS256 or EdDSA');
  check(
    jwtSecret !== '' || env !== 'production' || !authMethods.includes('jwt') || jwtAlgorithm !== 'HS256',
    'jwt-secret',
    'is required when -env is production and -auth-methods includes jwt with HS256',
  );
  const dataDir = resolve(s('data-dir') as string);
  const jwtKeyDir = s('jwt-key-dir') as string;
  const oidcIssuer = s('oidc-issuer') as string;
  const oidcAudience = s('oidc-audience') as string;
  if (authMethods.includes('oidc')) {
    check(oidcIssuer !== '', 'oidc-issuer', 'is required when -auth-methods includes oidc');
    check(oidcAudience !== '', 'oidc-audience', 'is required when -auth-methods includes oidc');
  }
  if (oidcIssuer !== '') {
    check(
      (env === 'production' ? /^https:\/\/\S+$/ : /^https?:\/\/\S+$/).test(oidcIssuer),
      'oidc-issuer',
      env === 'production' ? 'must be an https:// URL' : 'must be an http:// or https:// URL',
    );
  }
  const oidcJwksCacheMs = s('oidc-jwks-cache') as number;
  check(oidcJwksCacheMs >= 1000, 'oidc-jwks-cache', 'must be at least 1s');
  const jwtTtlMs = s('jwt-ttl') as number;
  check(jwtTtlMs >= 1000, 'jwt-ttl', 'must be at least 1s');
  const callbacks = buildCallbacksConfig(s);
  const graphqlMaxDepth = s('graphql-max-depth') as number;
  check(graphqlMaxDepth >= 1, 'graphql-max-depth', 'must be at least 1');
  const graphqlMaxCost = s('graphql-max-cost') as number;
  check(graphqlMaxCost >= 1, 'graphql-max-cost', 'must be at least 1');
  const dsn = s('db-dsn') as string;
  if (dsn !== '') {
    check(/^postgres(ql)?:\/\//.test(dsn), 'db-dsn', 'must be a postgres:// or postgresql:// URL');
  }
  return Object.freeze({
    port,
    host: (s('host') as string) || (env === 'development' ? '127.0.0.1' : '0.0.0.0'),
    env: env as Environment,
    db: Object.freeze({
      dsn,
      maxOpenConns,
      maxIdleConns,
      maxIdleTimeMs: s('db-max-idle-time') as number,
      queryTimeoutMs,
      migrate: (s('db-migrate') as boolean) || env === 'development' || dsn === '',
    }),
    dataDir,
    embeddedDbPort,
    limiter: Object.freeze({ rps, burst, enabled: s('limiter-enabled') as boolean }),
    trustedProxies: Object.freeze(trustedProxies),
    shutdownTimeoutMs: s('shutdown-timeout') as number,
    logLevel,
    workers: workers !== 0 ? workers : env === 'production' ? availableParallelism() : 1,
    redisUrl,
    cacheTtlMs,
    seedDemoData: s('seed-demo-data') as boolean,
    smtp: Object.freeze({
      host: smtpHost,
      port: smtpPort,
      username: s('smtp-username') as string,
      password: s('smtp-password') as string,
      sender: s('smtp-sender') as string,
    }),
    cors: Object.freeze({ trustedOrigins: Object.freeze(trustedOrigins) }),
    limiterPerUser: s('limiter-per-user') as boolean,
    limiterAddressCeiling: addressCeiling,
    metricsLoopback: s('metrics-loopback') as boolean,
    graphql: Object.freeze({
      enabled: s('graphql-enabled') as boolean,
      maxDepth: graphqlMaxDepth,
      maxCost: graphqlMaxCost,
    }),
    http: Object.freeze({
      readHeaderTimeoutMs,
      readTimeoutMs,
      idleTimeoutMs,
      maxConnections,
      maxConnectionsPerIp,
    }),
    auth: Object.freeze({
      methods: Object.freeze([...new Set(authMethods)] as AuthMethod[]),
      jwtAlgorithm: jwtAlgorithm as 'HS256' | 'EdDSA',
      jwtSecret,
      jwtKeyDir: jwtKeyDir === '' ? join(dataDir, 'jwt-keys') : resolve(jwtKeyDir),
      jwtIssuer: s('jwt-issuer') as string,
      jwtAudience: s('jwt-audience') as string,
      jwtTtlMs,
      oidc: Object.freeze({
        issuer: oidcIssuer,
        audience: oidcAudience,
        autoProvision: s('oidc-auto-provision') as boolean,
        jwksCacheMs: oidcJwksCacheMs,
      }),
    }),
    callbacks,
    operations: buildOperationsConfig(s, env as Environment),
    tracing: readTracingConfig(settings),
    posters: buildPostersConfig(s, dataDir),
    events: buildEventsConfig(s),
  });
}

// Read apart from the rest so that main.ts can start tracing before anything else loads.
export function readTracingConfig(settings: Settings): TracingConfig {
  const s = settings.get;
  const otlpEndpoint = s('otel-endpoint') as string;
  const zipkinEndpoint = s('zipkin-endpoint') as string;
  for (const [flag, url] of [
    ['otel-endpoint', otlpEndpoint],
    ['zipkin-endpoint', zipkinEndpoint],
  ] as const) {
    check(url === '' || /^https?:\/\/[^/\s]+(\/\S*)?$/.test(url), flag, 'must be an http:// or https:// URL');
  }
  const serviceName = s('otel-service-name') as string;
  check(serviceName.trim() !== '', 'otel-service-name', 'must not be empty');
  const sampleRatio = s('otel-sample-ratio') as number;
  check(sampleRatio >= 0 && sampleRatio <= 1, 'otel-sample-ratio', 'must be between 0 and 1');
  return Object.freeze({
    otlpEndpoint: otlpEndpoint.replace(/\/+$/, ''),
    zipkinEndpoint,
    serviceName,
    sampleRatio,
  });
}

function buildPostersConfig(s: Settings['get'], dataDir: string): PostersConfig {
  const maxBytes = s('poster-max-bytes') as number;
  check(maxBytes >= 1024, 'poster-max-bytes', 'must be at least 1024');
  // 10,000 parts of lib-storage's 5 MiB: the most one multipart upload of ours can hold.
  check(maxBytes <= 10_000 * 5 * 1024 * 1024, 'poster-max-bytes', 'must be at most 52428800000');
  const endpoint = s('s3-endpoint') as string;
  const bucket = s('s3-bucket') as string;
  const accessKeyId = s('s3-access-key-id') as string;
  const secretAccessKey = s('s3-secret-access-key') as string;
  check(
    endpoint === '' || /^https?:\/\/[^/\s]+\/?$/.test(endpoint),
    's3-endpoint',
    'must be an http:// or https:// URL with no path',
  );
  check(endpoint === '' || bucket !== '', 's3-bucket', 'is required when -s3-endpoint is set');
  check(
    (accessKeyId === '') === (secretAccessKey === ''),
    's3-secret-access-key',
    'must be set together with -s3-access-key-id',
  );
  return Object.freeze({
    maxBytes,
    directory: join(dataDir, 'posters'),
    s3:
      bucket === ''
        ? null
        : Object.freeze({
            endpoint,
            bucket,
            region: s('s3-region') as string,
            accessKeyId,
            secretAccessKey,
            forcePathStyle: s('s3-force-path-style') as boolean,
          }),
  });
}

function buildOperationsConfig(s: Settings['get'], env: Environment): OperationsConfig {
  const importMaxBytes = s('import-max-bytes') as number;
  check(importMaxBytes >= 1024, 'import-max-bytes', 'must be at least 1024');
  const importWorkers = s('import-workers') as number;
  check(importWorkers >= 1 && importWorkers <= 64, 'import-workers', 'must be between 1 and 64');
  const statsTimeoutMs = s('stats-timeout') as number;
  check(statsTimeoutMs >= 10 && statsTimeoutMs <= 60_000, 'stats-timeout', 'must be between 10ms and 60s');
  return Object.freeze({
    importMaxBytes,
    importWorkers,
    statsTimeoutMs,
    profilingEnabled: (s('profiling-enabled') as boolean) || env !== 'production',
  });
}

function buildEventsConfig(s: Settings['get']): EventsConfig {
  const retentionMs = s('events-retention') as number;
  check(retentionMs >= 60_000, 'events-retention', 'must be at least 1m');
  const heartbeatMs = s('events-heartbeat') as number;
  check(heartbeatMs >= 100 && heartbeatMs <= 300_000, 'events-heartbeat', 'must be between 100ms and 5m');
  const pollMs = s('events-poll') as number;
  check(pollMs >= 50 && pollMs <= 60_000, 'events-poll', 'must be between 50ms and 1m');
  const wsPingMs = s('ws-ping') as number;
  check(wsPingMs >= 100 && wsPingMs <= 300_000, 'ws-ping', 'must be between 100ms and 5m');
  const maxBufferedBytes = s('stream-max-buffered') as number;
  check(maxBufferedBytes >= 1024, 'stream-max-buffered', 'must be at least 1024');
  return Object.freeze({ retentionMs, heartbeatMs, pollMs, wsPingMs, maxBufferedBytes });
}

function buildCallbacksConfig(s: Settings['get']): CallbacksConfig {
  const addr = s('callbacks-addr') as string;
  const hostPort = /^(\[[^\]]+\]|[^:\s]*):(\d+)$/.exec(addr);
  check(
    addr === '' || (hostPort !== null && Number(hostPort[2]) <= 65535),
    'callbacks-addr',
    'must be host:port (port 0 picks a free one), or empty to disable the listener',
  );
  const upstream = s('callbacks-upstream') as string;
  check(
    /^https?:\/\/[^/\s]+(\/\S*)?$/.test(upstream),
    'callbacks-upstream',
    'must be an http:// or https:// URL',
  );
  const ttlMs = checked(s, 'callbacks-ttl') as number;
  const concurrency = checked(s, 'callbacks-concurrency') as number;
  const upstreamTimeoutMs = s('callbacks-upstream-timeout') as number;
  check(upstreamTimeoutMs > 0, 'callbacks-upstream-timeout', 'must be greater than zero');
  const leaseMs = s('callbacks-lease') as number;
  check(leaseMs >= 300, 'callbacks-lease', 'must be at least 300ms');
  const clientIntervalMs = s('callbacks-client-interval') as number;
  check(clientIntervalMs > 0, 'callbacks-client-interval', 'must be greater than zero');
  return Object.freeze({
    enabled: s('callbacks-enabled') as boolean,
    listen: hostPort
      ? Object.freeze({
          // ":9090" listens on every interface, as Go's net.Listen does.
          host: (hostPort[1] as string).replace(/^\[|\]$/g, '') || '0.0.0.0',
          port: Number(hostPort[2]),
        })
      : null,
    upstream: upstream.replace(/\/+$/, ''),
    ttlMs,
    concurrency,
    upstreamTimeoutMs,
    leaseMs,
    clientIntervalMs,
  });
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
    return `  -${f.name} ${f.kind === 'bool' ? '' : f.kind}\n\t${f.help}${def} [${envName(f.name)}]`;
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
    '  jwt rotate                    with -jwt-alg EdDSA: a new signing key; expired keys removed',
    "  demo cors [-demo-port 9000]   serve the book's CORS demo pages",
    '  openapi [callbacks]           print the OpenAPI 3.1 document (of the callback listener)',
    '  callbacks                     run the callback service alone (POST /callback)',
    '  callbacks upstream            a stand-in for the upstream /objects/{id} service',
    "  callbacks client              post callbacks like the task's client",
    '',
    'Flags:',
    ...lines,
  ].join('\n');
}
