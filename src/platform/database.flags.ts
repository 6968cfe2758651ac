// Flags of PostgreSQL: the DSN (or the embedded server and its port), the pool, the query
// timeout and migrations at start (-all belongs to `migrate down`).
import { bool, duration, durationRange, type FlagValues, int, text, when } from './flags.ts';
import type { Environment } from './process.flags.ts';

// Whether pg can parse the DSN: it reads it with `new URL` (an empty host, a Unix-socket DSN's
// `@/db?host=/dir`, stands in as a placeholder host), and an unparsable one (port 99999) threw
// a TypeError with a stack at the first connection. Checked here, the error names no value.
function isPostgresUrl(dsn: string): boolean {
  if (!/^postgres(ql)?:\/\//.test(dsn)) return false;
  try {
    const port = new URL(dsn.replace('@/', '@localhost/')).port;
    return port === '' || Number(port) >= 1;
  } catch {
    return false;
  }
}

export const databaseFlags = {
  'db-dsn': text({
    default: '',
    help: '`postgres://…` URL; empty runs the embedded PostgreSQL',
    secret: true,
    rule: when(
      (dsn) => dsn === '' || isPostgresUrl(dsn),
      'must be a postgres:// or postgresql:// URL (a port from 1 to 65535)',
    ),
  }),
  'db-max-open-conns': int({
    default: '25',
    help: 'pool size',
    rule: when((n) => n >= 1, 'must be at least 1'),
  }),
  'db-max-idle-conns': int({
    default: '25',
    help: 'accepted for compatibility (see docs/decisions.md)',
    rule: when((n) => n >= 0, 'must not be negative'),
  }),
  'db-max-idle-time': duration({
    default: '15m',
    help: 'idle connections are closed after this (0-24h)',
    rule: durationRange(0, 86_400_000),
  }),
  'db-query-timeout': duration({
    default: '3s',
    help: 'server-side `statement_timeout` of every query (1ms-24h; PostgreSQL takes at most 2147483647 ms)',
    rule: durationRange(1, 86_400_000),
  }),
  'db-migrate': bool({
    default: 'false',
    help: 'apply pending migrations at start; always on in development and on the embedded database',
  }),
  'embedded-db-port': int({
    default: '5433',
    help: 'port of the embedded PostgreSQL (127.0.0.1 only)',
    rule: when((n) => n > 0 && n <= 65535, 'must be between 1 and 65535'),
  }),
  all: bool({ default: 'false', help: 'with `migrate down`: roll back every migration' }),
};

export function databaseConfig(v: FlagValues<typeof databaseFlags>, env: Environment) {
  const dsn = v['db-dsn'];
  return {
    db: Object.freeze({
      dsn,
      maxOpenConns: v['db-max-open-conns'],
      maxIdleConns: v['db-max-idle-conns'],
      maxIdleTimeMs: v['db-max-idle-time'],
      queryTimeoutMs: v['db-query-timeout'],
      migrate: v['db-migrate'] || env === 'development' || dsn === '',
    }),
    embeddedDbPort: v['embedded-db-port'],
  };
}
