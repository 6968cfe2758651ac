// PostgreSQL access through node-postgres. Every connection is opened with a server-side
// statement_timeout, so a slow query is cancelled by PostgreSQL itself (the book's 3 s
// context timeout), not merely abandoned by the client.
import pg from 'pg';

export type Db = MeasuredPool;
export type Queryable = pg.Pool | pg.PoolClient;

// The counters of Go's sql.DBStats that node-postgres does not keep (for /debug/vars).
export type PoolStats = { waitCount: number; waitNanoseconds: number; idleTimeClosed: number };

type ConnectCallback = (
  err: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void,
) => void;

// A pool that counts, as Go does, the checkouts that had to wait for a connection and the
// time they waited, and the connections closed for being idle too long. pg.Pool.query goes
// through connect() too, so every query is counted.
export class MeasuredPool extends pg.Pool {
  readonly stats: PoolStats = { waitCount: 0, waitNanoseconds: 0, idleTimeClosed: 0 };

  constructor(config: pg.PoolConfig) {
    super(config);
    const releasedAt = new WeakMap<object, number>();
    this.on('release', (err, client) => {
      if (!err) releasedAt.set(client, performance.now());
    });
    this.on('acquire', (client) => releasedAt.delete(client));
    // The pool's idle timer is the only thing that removes a connection that has rested a
    // whole idleTimeoutMillis since its release.
    this.on('remove', (client) => {
      const since = releasedAt.get(client);
      const idleMs = config.idleTimeoutMillis ?? 0;
      if (since !== undefined && idleMs > 0 && performance.now() - since >= idleMs - 1) {
        this.stats.idleTimeClosed++;
      }
    });
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: ConnectCallback): void;
  override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | undefined {
    const waits = this.idleCount === 0 && this.totalCount >= (this.options.max ?? 10) && !this.ending;
    if (!waits) {
      if (!callback) return super.connect();
      super.connect(callback);
      return undefined;
    }
    this.stats.waitCount++;
    const start = process.hrtime.bigint();
    const waited = () => {
      this.stats.waitNanoseconds += Number(process.hrtime.bigint() - start);
    };
    if (callback) {
      super.connect((err, client, done) => {
        waited();
        callback(err, client, done);
      });
      return undefined;
    }
    return super.connect().finally(waited);
  }
}

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
  const pool = new MeasuredPool({
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

// The pool as seen by work that must end by a deadline (a gRPC call's): while less time is
// left than the pool's own statement_timeout, each statement runs on a connection whose
// statement_timeout is what remains, so PostgreSQL itself cancels it when the deadline passes
// (and the connection gets the pool's setting back before it returns to the pool). With more
// time left, or none given, this is the pool itself, at no cost. `remainingMs` is read at each
// statement.
export function withDeadline(db: Db, remainingMs: () => number | undefined): Db {
  const poolTimeout = Number(db.options.statement_timeout ?? 0);
  const shorter = () => {
    const left = remainingMs();
    return left !== undefined && (poolTimeout === 0 || left < poolTimeout)
      ? Math.max(1, Math.floor(left))
      : 0;
  };
  const connect = async (): Promise<pg.PoolClient> => {
    const client = await db.connect();
    const timeout = shorter();
    if (timeout === 0) return client;
    try {
      await client.query(`SET statement_timeout = ${timeout}`);
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    const release = client.release.bind(client);
    client.release = (err?: Error | boolean) => {
      if (err) return release(err);
      client.query('RESET statement_timeout').then(
        () => release(),
        (resetFailed: Error) => release(resetFailed),
      );
    };
    return client;
  };
  const query = async (...args: unknown[]) => {
    if (shorter() === 0) return (db.query as (...a: unknown[]) => unknown)(...args);
    const client = await connect();
    try {
      return await (client.query as (...a: unknown[]) => unknown)(...args);
    } finally {
      client.release();
    }
  };
  return new Proxy(db, {
    get: (target, property) => {
      if (property === 'connect') return connect;
      if (property === 'query') return query;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
