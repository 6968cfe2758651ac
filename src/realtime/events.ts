// Change events as clients receive them, and the outboxes' retention, for every topic.
// An event is serialised once, for every SSE and WebSocket client of the process.
import type { Db, Queryable } from '../platform/db.ts';
import * as sql from './events.sql.ts';
import type { Topic } from './topics.ts';

export type StreamEvent = Readonly<{
  id: number;
  // `id: …`, `event: …`, `data: …` and the blank line that ends an SSE event
  sse: string;
  // the WebSocket message: the same data with its topic
  ws: string;
}>;

export function toStreamEvent(topic: Topic, row: sql.EventRow): StreamEvent {
  const id = Number(row.id);
  const data = {
    id,
    type: row.type,
    occurred_at: row.created_at.toISOString(),
    [topic.subject]: topic.present(row.type, row.payload),
  };
  const json = JSON.stringify(data);
  return {
    id,
    sse: `id: ${id}\nevent: ${row.type}\ndata: ${json}\n\n`,
    ws: `{"topic":"${topic.name}",${json.slice(1)}`,
  };
}

export async function eventsAfter(
  db: Queryable,
  topic: Topic,
  afterId: number,
  limit: number,
): Promise<StreamEvent[]> {
  return (await sql.selectEventsAfter(db, topic.outbox, afterId, limit)).map((row) =>
    toStreamEvent(topic, row),
  );
}

export const lastEventId = (db: Queryable, topic: Topic): Promise<number> =>
  sql.selectLastEventId(db, topic.outbox);

export type Gap = { last_event_id: number; pruned_up_to: number };

// Where a client resuming after `afterId` has to start: when events it has not seen were
// pruned, it is told so (a gap) and gets what is left.
export async function resumePoint(
  db: Queryable,
  topic: Topic,
  afterId: number,
): Promise<{ gap: Gap | null }> {
  const prunedUpTo = await sql.selectPrunedUpTo(db, topic.outbox);
  return { gap: afterId < prunedUpTo ? { last_event_id: afterId, pruned_up_to: prunedUpTo } : null };
}

// Deletes the topic's events created before `olderThan` (the -events-retention window, run as
// a scheduled task), `batch` rows a statement; resumes from before them get a gap event.
// Returns how many were deleted.
export async function pruneEvents(db: Db, topic: Topic, olderThan: Date, batch = 10_000): Promise<number> {
  let deleted = 0;
  for (;;) {
    const count = await sql.deleteEventsBefore(db, topic.outbox, olderThan, batch);
    deleted += count;
    if (count < batch) return deleted;
  }
}
