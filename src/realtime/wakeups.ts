// What wakes a topic's event feed when one of its changes commits somewhere. The process that
// made the change publishes a wake-up once it has committed, from outside the writing
// transaction (a NOTIFY inside it would make every writer's commit queue behind one
// database-wide lock):
// - by default, a NOTIFY on the topic's channel, which every process receives on one LISTEN
//   connection for every topic;
// - with -redis-url, a message on the topic's Redis channel; the feeds then hold no LISTEN
//   connection.
// Either way the feed's safety poll covers a wake-up that is lost (a listener reconnecting,
// Redis down, a change made by psql or `greenlight seed`).
import type { Db } from '../platform/db.ts';
import { listen } from '../platform/listener.ts';
import type { Logger } from '../platform/logger.ts';
import type { RedisConnection } from '../platform/redis.ts';
import type { Topic } from './topics.ts';

// Starts waking `wake`; returns how to stop.
export type Wakeups = (wake: () => void) => () => Promise<void>;

// The wake-ups of each topic.
export type WakeupSource = (topic: Topic) => Wakeups;

// One connection listens on the channels of every topic in `topics` while any feed is woken
// by it. Each (re)connection wakes every feed: notifications sent while the connection was
// down are lost, the rows are not.
export function postgresWakeups(dsn: string, topics: readonly Topic[], logger: Logger): WakeupSource {
  const waking = new Map<string, Set<() => void>>(topics.map((topic) => [topic.channel, new Set()]));
  const wakeAll = () => {
    for (const set of waking.values()) for (const wake of set) wake();
  };
  let listening: Promise<() => Promise<void>> | undefined;
  return (topic) => (wake) => {
    const set = waking.get(topic.channel);
    if (!set) throw new Error(`no wake-ups for the topic ${topic.name}`);
    set.add(wake);
    listening ??= listen(
      dsn,
      {
        channel: [...waking.keys()],
        applicationName: 'greenlight-events-listener',
        notification: (_payload, _client, _processId, channel) => {
          for (const woken of waking.get(channel) ?? []) woken();
        },
        connected: wakeAll,
        lost: () => {},
        lostMessage: 'event feed listener lost; the safety poll covers it',
      },
      logger,
    );
    return async () => {
      set.delete(wake);
      const stop = listening;
      if (!stop || [...waking.values()].some((s) => s.size > 0)) return;
      listening = undefined;
      await (await stop)();
    };
  };
}

// Every process (the writer too) is woken by the subscription.
export function redisWakeups(redis: RedisConnection): WakeupSource {
  return (topic) => (wake) => {
    const unsubscribe = redis.subscribe(topic.redisChannel, () => wake());
    return async () => unsubscribe();
  };
}

// Sends one wake-up of the topic to every process.
export type Publisher = (topic: Topic) => Promise<unknown>;

export const notifyPublisher =
  (db: Db): Publisher =>
  (topic) =>
    db.query({ name: 'notify-events', text: "SELECT pg_notify($1, '')", values: [topic.channel] });

export const redisPublisher =
  (redis: RedisConnection): Publisher =>
  (topic) =>
    redis.publish(topic.redisChannel, '');

// Publishes a wake-up after each change of the topic this process commits, whether or not it
// serves streams itself. One wake-up at a time, and WAKEUP_GAP_MS at least between two: the
// changes that commit in the meantime get one more wake-up at the end of the gap, sent after
// their commits. A busy writer then sends a bounded number of wake-ups a second however many
// changes it makes (each is a round trip, which would cost a write path more than its change);
// a change on its own is announced at once.
const WAKEUP_GAP_MS = 10;

export function publishWakeups(publish: Publisher, topic: Topic, db: Db, logger: Logger): () => void {
  let sending = false;
  let again = false;
  const send = () => {
    sending = true;
    const started = performance.now();
    publish(topic)
      .catch((err: Error) => {
        logger.debug(
          { err, topic: topic.name },
          'event wake-up not published; the safety poll delivers the change',
        );
      })
      .finally(() => {
        const gap = Math.max(0, WAKEUP_GAP_MS - (performance.now() - started));
        setTimeout(() => {
          sending = false;
          if (again) {
            again = false;
            send();
          }
        }, gap).unref();
      });
  };
  return topic.observeChanges(db, async () => {
    // Not awaited: the writer's answer does not wait for the wake-up.
    if (sending) again = true;
    else send();
  });
}
