// Change events as clients receive them, and the outboxes' retention, for every topic.
// An event is serialised once, for every SSE and WebSocket client of the process.
import type { Db, Queryable } from '../platform/db.ts';
import type { TraceCarrier } from '../platform/tracing.ts';
import * as sql from './events.sql.ts';
import type { Topic } from './topics.ts';

export { type Position, START } from './events.sql.ts';

export type StreamEvent = Readonly<{
  id: number;
  type: string;
  // when its change was written (the row's created_at, to the second)
  createdAt: Date;
  // the event's data as JSON: what SSE sends as `data:` and the broker as the message body
  json: string;
  // where it stands in the delivery order: (transaction id, id)
  position: sql.Position;
  // `id: …`, `event: …`, `data: …` and the blank line that ends an SSE event
  sse: string;
  // the WebSocket message: the same data with its topic
  ws: string;
  // the same data as an object, for transports that encode it their own way (gRPC) and for
  // the topic's per-event rule (Topic.visible reads its record)
  data: Readonly<Record<string, unknown>>;
  // the W3C trace context of the change that wrote it, when it was traced
  traceContext: TraceCarrier | null;
}>;

// Whether `a` comes after `b` in the delivery order.
export const isAfter = (a: sql.Position, b: sql.Position): boolean =>
  a.xid > b.xid || (a.xid === b.xid && a.id > b.id);

export function toStreamEvent(topic: Topic, row: sql.EventRow): StreamEvent {
  const id = Number(row.id);
  const record = topic.present(row.type, row.payload);
  const data = { id, type: row.type, occurred_at: row.created_at.toISOString(), [topic.subject]: record };
  const json = JSON.stringify(data);
  return {
    id,
    type: row.type,
    createdAt: row.created_at,
    json,
    position: { xid: BigInt(row.xid), id },
    sse: `id: ${id}\nevent: ${row.type}\ndata: ${json}\n\n`,
    ws: `{"topic":"${topic.name}",${json.slice(1)}`,
    data,
    traceContext: row.trace_context,
  };
}

// The events after `after` that can be delivered now, at most `limit`; `pending` when
// committed events beyond them wait for an older transaction still running to end.
export async function eventsAfter(
  db: Queryable,
  topic: Topic,
  after: sql.Position,
  limit: number,
): Promise<{ events: StreamEvent[]; pending: boolean }> {
  const { rows, pending } = await sql.selectEventsAfter(db, topic.outbox, after, limit);
  return { events: rows.map((row) => toStreamEvent(topic, row)), pending };
}

// The transactions that had ended when `snapshot` was taken (PostgreSQL's rule: below its
// xmin, or below its xmax and not among the transactions it saw running). `xmin`: every
// transaction below it had ended, so a batch of events ending below it can be passed over whole.
export type EndedTransactions = Readonly<{ xmin: bigint; has: (position: sql.Position) => boolean }>;

export function endedBefore(snapshot: string): EndedTransactions {
  const [xmin = '0', xmax = '0', running = ''] = snapshot.split(':');
  const low = BigInt(xmin);
  const high = BigInt(xmax);
  const inProgress = new Set(running === '' ? [] : running.split(',').map(BigInt));
  return { xmin: low, has: ({ xid }) => xid < low || (xid < high && !inProgress.has(xid)) };
}

// A live follower starts from now: events whose transactions had ended when it subscribed are
// not sent to it, even those the feed has not delivered yet because an older transaction
// was still running (a long import holds the horizon back; the feed then reads its backlog).
export async function endedNow(db: Queryable): Promise<EndedTransactions> {
  return endedBefore(await sql.selectSnapshot(db));
}

// The position of the last event that can be delivered now.
export const lastPosition = (db: Queryable, topic: Topic): Promise<sql.Position> =>
  sql.selectLastPosition(db, topic.outbox);

export type Gap = { last_event_id: number; pruned_up_to: number };

// Where a client resuming after the event `afterId` (an id it was sent) continues, and the gap
// it is told of when events it has not seen were pruned:
// - the event is still there: right after it, no gap (pruning deletes a prefix of the order);
// - it was the last event pruned: after what was pruned, no gap;
// - it was pruned before that: a gap, then what is left;
// - no event ever had the id (a rolled-back change's, or one beyond the last): after the
//   event with the greatest id below it.
export async function resumePoint(
  db: Queryable,
  topic: Topic,
  afterId: number,
): Promise<{ gap: Gap | null; after: sql.Position }> {
  const { prunedUpTo, maxPrunedId, event } = await sql.selectResume(db, topic.outbox, afterId);
  if (event?.id === afterId) return { gap: null, after: event };
  if (afterId === prunedUpTo.id) return { gap: null, after: sql.START };
  if (afterId <= maxPrunedId)
    return { gap: { last_event_id: afterId, pruned_up_to: prunedUpTo.id }, after: sql.START };
  return { gap: null, after: event ?? sql.START };
}

// Deletes the topic's events created before `olderThan` (the -events-retention window, run as
// a scheduled task), `batch` rows a statement; resumes from before them get a gap event.
// With `keepDurable`, none a durable reader has not read yet (src/realtime/consumers.ts).
// Returns how many were deleted.
export async function pruneEvents(
  db: Db,
  topic: Topic,
  olderThan: Date,
  options: { batch?: number; keepDurable?: boolean } = {},
): Promise<number> {
  const { batch = 10_000, keepDurable = false } = options;
  const keepAfter = keepDurable ? await sql.selectLowestCursor(db, topic.outbox) : null;
  let deleted = 0;
  for (;;) {
    const count = await sql.deleteEventsBefore(db, topic.outbox, olderThan, batch, keepAfter);
    deleted += count;
    if (count < batch) return deleted;
  }
}
