// PostgreSQL access through node-postgres. Every connection is opened with a server-side
// statement_timeout, so a slow query is cancelled by PostgreSQL itself (the book's 3 s
// context timeout), not merely abandoned by the client.
import pg from 'pg';

export type Db = pg.Pool;
export type Queryable = pg.Pool | pg.PoolClient;

export type PoolOptions = Readonly<{
  dsn: string;
  maxOpenConns: number;
  maxIdleTimeMs: number;
  queryTimeoutMs: number;
  applicationName?: string;
  // Session settings for every connection, as libpq's `options` ("-c name=value ...").
  sessionOptions?: string;
}>;

const BIGINT_OID = 20;

// bigint ids and counts fit comfortably in a double for this schema; parse them as numbers.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === BIGINT_OID
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export function createPool(options: PoolOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.dsn,
    max: options.maxOpenConns,
    idleTimeoutMillis: options.maxIdleTimeMs,
    connectionTimeoutMillis: 5_000,
    statement_timeout: options.queryTimeoutMs,
    // Client-side backstop in case the server never answers at all.
    query_timeout: options.queryTimeoutMs + 2_000,
    application_name: options.applicationName ?? 'greenlight',
    ...(options.sessionOptions ? { options: options.sessionOptions } : {}),
    types,
  });
  // An idle client losing its connection emits 'error' on the pool; without a listener
  // that would crash the process. The next query simply gets a fresh connection.
  pool.on('error', () => {});
  return pool;
}

export async function withTransaction<T>(db: Db, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
