// Helpers for the callback service's tests: a stand-in upstream and a callback service on
// a database of their own, both real HTTP servers on loopback, stopped after the file.
import { after } from 'node:test';
import pg from 'pg';
import type { CallbackServiceOptions } from '../src/callbacks/callbacks.ts';
import { type RunningCallbacks, startCallbacks } from '../src/callbacks/listener.ts';
import { type StandInBehaviour, StandInUpstream } from '../src/callbacks/stand-in.ts';
import { captureLogger, createTestDatabase, type LogLine, testConfig, waitFor } from './helpers.ts';

export async function startUpstream(behaviour: Partial<StandInBehaviour> = {}) {
  const upstream = new StandInUpstream({ minDelayMs: 20, maxDelayMs: 60, ...behaviour });
  const url = await upstream.listen(0);
  after(() => upstream.close());
  return { upstream, url };
}

export type TestCallbacks = RunningCallbacks & {
  url: string;
  dsn: string;
  lines: LogLine[];
  post: (body: unknown, init?: RequestInit) => Promise<Response>;
  query: <R extends pg.QueryResultRow>(sql: string, params?: unknown[]) => Promise<R[]>;
};

// Short TTL, lease and timeouts so that every behaviour shows within seconds.
export async function startTestCallbacks(
  upstreamUrl: string,
  options: { flags?: string[]; dsn?: string; tuning?: CallbackServiceOptions['upstream'] } = {},
): Promise<TestCallbacks> {
  // Registered before the database's own hook so that the service stops before its
  // database is dropped (after-hooks run in the order they were added).
  let stop = async () => {};
  after(() => stop());
  const dsn = options.dsn ?? (await createTestDatabase());
  const config = testConfig(dsn, [
    '-callbacks-addr',
    '127.0.0.1:0',
    '-callbacks-upstream',
    upstreamUrl,
    '-callbacks-ttl',
    '2s',
    '-callbacks-lease',
    '1s',
    '-callbacks-upstream-timeout',
    '1s',
    '-shutdown-timeout',
    '2s',
    ...(options.flags ?? []),
  ]);
  const { logger, lines } = captureLogger();
  const running = await startCallbacks({
    config,
    dsn,
    logger,
    tuning: {
      pollIntervalMs: 50,
      upstream: { retryInitialDelayMs: 50, halfOpenAfterMs: 500, ...options.tuning },
    },
  });
  const db = new pg.Pool({ connectionString: dsn, max: 2 });
  db.on('error', () => {});
  let stopped = false;
  stop = async () => {
    if (stopped) return;
    stopped = true;
    await running.stop();
    await db.end();
  };
  const url = `http://${running.address}`;
  return {
    ...running,
    stop: () => stop(),
    url,
    dsn,
    lines,
    post: (body, init = {}) =>
      fetch(`${url}/callback`, {
        method: 'POST',
        body: typeof body === 'string' ? body : JSON.stringify(body),
        ...init,
      }),
    query: async (sql, params = []) => (await db.query(sql, params)).rows,
  };
}

export async function backlog(callbacks: TestCallbacks): Promise<number> {
  const [row] = await callbacks.query<{ count: string }>('SELECT count(*) FROM callback_batches');
  return Number(row?.count);
}

export async function storedIds(callbacks: TestCallbacks): Promise<number[]> {
  const rows = await callbacks.query<{ object_id: string }>(
    'SELECT object_id FROM callback_objects ORDER BY object_id',
  );
  return rows.map((r) => Number(r.object_id));
}

export const processed = (callbacks: TestCallbacks, timeoutMs?: number) =>
  waitFor('the backlog to empty', async () => (await backlog(callbacks)) === 0, timeoutMs);

export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
