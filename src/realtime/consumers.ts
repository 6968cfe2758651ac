// Durable readers of the outboxes (the broker relay): unlike a stream's feed, which starts
// from now in each process, a durable reader keeps its position in the database and goes on
// from it after any restart, so it reads every event exactly in the delivery order (xid, id).
// While a broker is configured, pruning keeps the events past the lowest position
// (realtime.tasks.ts).
import type { Queryable } from '../platform/db.ts';
import * as sql from './events.sql.ts';
import { lastPosition, type Position } from './events.ts';
import type { Topic } from './topics.ts';

// Where `consumer` stands in the topic's outbox. A reader seen for the first time starts from
// the last event that can be delivered now (recorded at once): the history before it was
// never promised to it.
export async function durablePosition(db: Queryable, consumer: string, topic: Topic): Promise<Position> {
  const saved = await sql.selectCursor(db, consumer, topic.outbox);
  if (saved) return saved;
  const now = await lastPosition(db, topic);
  await sql.upsertCursor(db, consumer, topic.outbox, now);
  return now;
}

export const saveDurablePosition = (
  db: Queryable,
  consumer: string,
  topic: Topic,
  position: Position,
): Promise<void> => sql.upsertCursor(db, consumer, topic.outbox, position);
