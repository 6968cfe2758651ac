// GET /v1/stats: counts and recent activity from several modules, gathered at once under one
// deadline. Each source runs on its own connection in a read-only transaction whose
// statement_timeout is the deadline, so a source that times out is also cancelled by
// PostgreSQL and gives its connection back; the answer never waits for it.
import { selectTokenStats } from '../accounts/tokens.sql.ts';
import { selectUserStats } from '../accounts/users.sql.ts';
import { countObjects, selectBacklog } from '../callbacks/callbacks.sql.ts';
import { movieStats } from '../movies/movies.ts';
import { type Db, type Queryable, withTransaction } from '../platform/db.ts';
import { selectProductStats } from '../products/products.sql.ts';

type Source = (db: Queryable) => Promise<Record<string, unknown>>;

export const SOURCES = {
  movies: async (db) => {
    const s = await movieStats(db);
    return {
      total: s.total,
      added_last_day: s.addedLastDay,
      last_added_at: s.lastAddedAt?.toISOString() ?? null,
    };
  },
  users: async (db) => {
    const s = await selectUserStats(db);
    return {
      total: s.total,
      activated: s.activated,
      admins: s.admins,
      registered_last_day: s.registeredLastDay,
    };
  },
  tokens: async (db) => {
    const s = await selectTokenStats(db);
    return { live_sessions: s.live, issued_last_day: s.issuedLastDay };
  },
  products: async (db) => {
    const s = await selectProductStats(db);
    return {
      total: s.total,
      stock: s.stock,
      created_last_day: s.createdLastDay,
      updated_last_day: s.updatedLastDay,
    };
  },
  callbacks: async (db) => {
    const backlog = await selectBacklog(db);
    return {
      pending: backlog.callbacks,
      oldest_pending_seconds: backlog.oldestSeconds,
      objects: await countObjects(db),
    };
  },
} as const satisfies Record<string, Source>;

export type SourceName = keyof typeof SOURCES;
export type SourceResult = Record<string, unknown> | { error: 'timed out' | 'failed' };
export type Stats = { sources: Record<SourceName, SourceResult>; partial: boolean };

const TIMED_OUT = Symbol('timed out');

function runSource(db: Db, source: Source, deadlineMs: number): Promise<Record<string, unknown>> {
  return withTransaction(db, async (client) => {
    await client.query('SET TRANSACTION READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.ceil(deadlineMs))}`);
    return source(client);
  });
}

// `onFailure` hears of sources that failed for another reason than the deadline.
export async function gatherStats(
  db: Db,
  timeoutMs: number,
  onFailure: (source: string, err: unknown) => void,
): Promise<Stats> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), timeoutMs);
  });
  try {
    const entries = await Promise.all(
      (Object.entries(SOURCES) as [SourceName, Source][]).map(async ([name, source]) => {
        const run = runSource(db, source, timeoutMs - (performance.now() - started));
        try {
          const result = await Promise.race([run, deadline]);
          if (result === TIMED_OUT) {
            run.catch(() => {});
            return [name, { error: 'timed out' }] as const;
          }
          return [name, result] as const;
        } catch (err) {
          // PostgreSQL's own cancellation can win the race by a hair: still the deadline.
          if ((err as { code?: string }).code === '57014') return [name, { error: 'timed out' }] as const;
          onFailure(name, err);
          return [name, { error: 'failed' }] as const;
        }
      }),
    );
    const sources = Object.fromEntries(entries) as Stats['sources'];
    return { sources, partial: Object.values(sources).some((s) => 'error' in s) };
  } finally {
    clearTimeout(timer);
  }
}
