// Flags of the process as a whole: its environment, data directory, workers, shutdown grace,
// log level, and the two that stop it before anything starts (-version, -help).
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { bool, check, duration, durationRange, type FlagValues, int, oneOf, text, when } from './flags.ts';

export const ENVIRONMENTS = ['development', 'staging', 'production'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

// The documented levels only: `silent` would let an admin (log-level is a runtime setting)
// switch every process's log off, audit trail of errors included.
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'];

export const processFlags = {
  env: text({ default: 'development', help: '`development`, `staging` or `production`' }),
  'data-dir': text({
    default: 'data',
    help: 'where the embedded PostgreSQL keeps its files, and the posters on local disk (`posters/`)',
  }),
  workers: int({
    default: '0',
    help: 'serving processes; 0 = one per core in production, 1 otherwise',
    rule: when((n) => n >= 0 && n <= 256, 'must be between 0 (automatic) and 256'),
  }),
  'shutdown-timeout': duration({
    default: '30s',
    help: 'grace period for in-flight requests (0-1h)',
    rule: durationRange(0, 3_600_000),
  }),
  // Applied at run time by the logger (settings/runtime.ts).
  'log-level': text({
    default: 'info',
    help: '`debug`, `info`, `warn`, `error`',
    runtime: true,
    rule: when((level) => LOG_LEVELS.includes(level), `must be one of ${LOG_LEVELS.join(', ')}`),
  }),
  version: bool({ default: 'false', help: 'print version and commit, then exit' }),
  help: bool({ default: 'false', help: 'print the commands and flags, then exit' }),
};

export function processConfig(v: FlagValues<typeof processFlags>) {
  const env = v.env;
  check(oneOf(env, ENVIRONMENTS), 'env', `must be one of ${ENVIRONMENTS.join(', ')}`);
  return {
    env,
    dataDir: resolve(v['data-dir']),
    workers: v.workers !== 0 ? v.workers : env === 'production' ? availableParallelism() : 1,
    shutdownTimeoutMs: v['shutdown-timeout'],
    logLevel: v['log-level'],
  };
}
