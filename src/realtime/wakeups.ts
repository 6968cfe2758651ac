// What wakes each process's event feed when a movie change commits somewhere:
// - by default, a NOTIFY on `movie_events` (sent by the change's own statement) on one
//   LISTEN connection per process;
// - with -redis-url, a message on one Redis channel, published by the process that made the
//   change once it has committed; the feed then holds no LISTEN connection.
// Either way the feed's safety poll covers a wake-up that is lost (a listener reconnecting,
// Redis down, a change made by psql or `greenlight seed`).
import { MOVIE_EVENTS_CHANNEL } from '../movies/movies.sql.ts';
import { observeMovieChanges } from '../movies/movies.ts';
import type { Db } from '../platform/db.ts';
import { listen } from '../platform/listener.ts';
import type { Logger } from '../platform/logger.ts';
import type { RedisConnection } from '../platform/redis.ts';

// Starts waking `wake`; returns how to stop.
export type Wakeups = (wake: () => void) => () => Promise<void>;

export const REDIS_WAKEUP_CHANNEL = 'greenlight:movie-events';

// Each (re)connection wakes the feed too: notifications sent while the connection was down
// are lost, the rows are not.
export function postgresWakeups(dsn: string, logger: Logger): Wakeups {
  return (wake) => {
    const listening = listen(
      dsn,
      {
        channel: MOVIE_EVENTS_CHANNEL,
        applicationName: 'greenlight-events-listener',
        notification: () => wake(),
        connected: () => wake(),
        lost: () => {},
        lostMessage: 'event feed listener lost; the safety poll covers it',
      },
      logger,
    );
    return async () => (await listening)();
  };
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
