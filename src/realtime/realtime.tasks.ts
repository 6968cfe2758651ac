// The scheduled tasks of realtime (run by src/tasks; background.ts lists every module's).
import type { Task } from '../tasks/task.ts';
import { pruneEvents } from './events.ts';
import { TOPICS } from './topics.ts';

// Each topic's events older than -events-retention go (prune-movie-events,
// prune-product-events, prune-order-events); a resume from before them is told of the gap.
// With a broker configured, none the relay has not published yet (its durable cursor holds
// them).
export const REALTIME_TASKS: readonly Task[] = TOPICS.map(
  (topic): Task => ({
    name: `prune-${topic.outbox.table.replace('_', '-')}`,
    cron: '*/10 * * * *',
    run: async ({ db, config }) => ({
      deleted: await pruneEvents(db, topic, new Date(Date.now() - config.events.retentionMs), {
        keepDurable: config.broker.url !== '',
      }),
    }),
  }),
);
