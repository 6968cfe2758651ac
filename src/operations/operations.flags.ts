// Flags of the operator's endpoints: bulk import, statistics and profiling.
import { bool, duration, type FlagValues, int, when } from '../platform/flags.ts';
import type { Environment } from '../platform/process.flags.ts';

export const operationsFlags = {
  'import-max-bytes': int({
    default: '104857600',
    help: 'largest upload `POST /v1/movies/import` accepts (413 beyond; at least 1024)',
    rule: when((n) => n >= 1024, 'must be at least 1024'),
  }),
  'import-workers': int({
    default: '4',
    help: 'batch inserts (1,000 rows each) of one import in flight at once (1-64); atomic imports insert one batch at a time',
    rule: when((n) => n >= 1 && n <= 64, 'must be between 1 and 64'),
  }),
  'stats-timeout': duration({
    default: '500ms',
    help: 'deadline of `GET /v1/stats` (10ms-60s); a source still running then is reported as timed out and cancelled',
    rule: when((ms) => ms >= 10 && ms <= 60_000, 'must be between 10ms and 60s'),
  }),
  'profiling-enabled': bool({
    default: 'false',
    help: 'serve `POST /v1/admin/profile` and `/v1/admin/heap-snapshot` in production (always served in development and staging)',
  }),
};

export function operationsConfig(v: FlagValues<typeof operationsFlags>, env: Environment) {
  return Object.freeze({
    importMaxBytes: v['import-max-bytes'],
    importWorkers: v['import-workers'],
    statsTimeoutMs: v['stats-timeout'],
    // Off in production unless -profiling-enabled; the routes are then not registered.
    profilingEnabled: v['profiling-enabled'] || env !== 'production',
  });
}

export type OperationsConfig = ReturnType<typeof operationsConfig>;
