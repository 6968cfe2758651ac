// What wakes each process's event feed when a movie change commits somewhere:
// - by default, a NOTIFY on `movie_events` (sent by the change's own statement) on one
//   LISTEN connection per process;
// - with -redis-url, a message on one Redis channel, published by the process that made the
//   change once it has committed; the feed then holds no LISTEN connection.
// Either way the feed's safety poll covers a wake-up that is lost (a listener reconnecting,
// Redis down, a change made by psql or `greenlight seed`).
import pg from 'pg';
import { MOVIE_EVENTS_CHANNEL } from '../movies/movies.sql.ts';
import { observeMovieChanges } from '../movies/movies.ts';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import type { RedisConnection } from '../platform/redis.ts';

// Starts waking `wake`; returns how to stop.
export type Wakeups = (wake: () => void) => () => Promise<void>;

export const REDIS_WAKEUP_CHANNEL = 'greenlight:movie-events';
const BACKOFF_MS = { first: 250, max: 10_000 };

export function postgresWakeups(dsn: string, logger: Logger): Wakeups {
  return (wake) => keepListening(dsn, logger, wake);
}

// Every process (the writer too) is woken by the subscription.
export function redisWakeups(redis: RedisConnection): Wakeups {
  return (wake) => {
    const unsubscribe = redis.subscribe(REDIS_WAKEUP_CHANNEL, () => wake());
    return async () => unsubscribe();
  };
}

// Publishes a wake-up after each movie change this process commits, whether or not it serves
// streams itself. Returns how to stop.
export function publishMovieWakeups(redis: RedisConnection, db: Db, logger: Logger): () => void {
  return observeMovieChanges(db, async () => {
    // Not awaited: the writer's answer does not wait for the wake-up.
    redis.publish(REDIS_WAKEUP_CHANNEL, '').catch((err: Error) => {
      logger.debug({ err }, 'event wake-up not published; the safety poll delivers the change');
    });
  });
}

// Keeps one connection LISTENing on the events channel, reconnecting after a failure with a
// growing, jittered pause. Each (re)connect wakes the feed: notifications sent while the
// connection was down are lost, the rows are not.
function keepListening(dsn: string, logger: Logger, wake: () => void): () => Promise<void> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: dsn, application_name: 'greenlight-events-listener' });
    let failed = false;
    const fail = (err?: Error) => {
      if (failed) return;
      failed = true;
      if (client === next) client = undefined;
      next.end().catch(() => {});
      if (stopped) return;
      const pause = Math.min(BACKOFF_MS.max, BACKOFF_MS.first * 2 ** failures++) * (0.5 + Math.random() / 2);
      logger.warn(
        { err, retry_ms: Math.round(pause) },
        'event feed listener lost; the safety poll covers it',
      );
      retry = setTimeout(() => void connect(), pause);
    };
    next.on('error', fail);
    next.on('end', () => fail());
    next.on('notification', () => wake());
    client = next;
    try {
      await next.connect();
      await next.query(`LISTEN ${MOVIE_EVENTS_CHANNEL}`);
    } catch (err) {
      fail(err as Error);
      return;
    }
    failures = 0;
    wake();
  };

  void connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end().catch(() => {});
  };
}
