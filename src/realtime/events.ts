// Movie change events as clients receive them, and the outbox's retention.
// An event is serialised once, for every SSE and WebSocket client of the process.
import { type Movie, toMovieJson } from '../movies/movie.ts';
import type { Db, Queryable } from '../platform/db.ts';
import * as sql from './events.sql.ts';

export const EVENT_TYPES = ['movie.created', 'movie.updated', 'movie.deleted'] as const;
export const MOVIES_TOPIC = 'movies';

export type StreamEvent = Readonly<{
  id: number;
  // `id: …`, `event: …`, `data: …` and the blank line that ends an SSE event
  sse: string;
  // the WebSocket message: the same data with its topic
  ws: string;
}>;

// The movie as GET /v1/movies/:id shows it (the payload holds its fields, runtime in minutes);
// a deleted movie is only its id and last version.
function movieOf(type: string, payload: Record<string, unknown>): Record<string, unknown> {
  if (type === 'movie.deleted') return { id: payload.id, version: payload.version };
  return toMovieJson(payload as unknown as Movie);
}

export function toStreamEvent(row: sql.EventRow): StreamEvent {
  const id = Number(row.id);
  const data = {
    id,
    type: row.type,
    occurred_at: row.created_at.toISOString(),
    movie: movieOf(row.type, row.payload),
  };
  const json = JSON.stringify(data);
  return {
    id,
    sse: `id: ${id}\nevent: ${row.type}\ndata: ${json}\n\n`,
    ws: `{"topic":"${MOVIES_TOPIC}",${json.slice(1)}`,
  };
}

export async function eventsAfter(db: Queryable, afterId: number, limit: number): Promise<StreamEvent[]> {
  return (await sql.selectEventsAfter(db, afterId, limit)).map(toStreamEvent);
}

export const lastEventId = (db: Queryable): Promise<number> => sql.selectLastEventId(db);

// Where a client resuming after `afterId` has to start: when events it has not seen were
// pruned, it is told so (a gap) and gets what is left.
export async function resumePoint(
  db: Queryable,
  afterId: number,
): Promise<{ gap: { last_event_id: number; pruned_up_to: number } | null }> {
  const prunedUpTo = await sql.selectPrunedUpTo(db);
  return { gap: afterId < prunedUpTo ? { last_event_id: afterId, pruned_up_to: prunedUpTo } : null };
}

// Deletes the events created before `olderThan` (the -events-retention window, run as a
// scheduled task), `batch` rows a statement; resumes from before them get a gap event.
// Returns how many were deleted.
export async function pruneMovieEvents(db: Db, olderThan: Date, batch = 10_000): Promise<number> {
  let deleted = 0;
  for (;;) {
    const count = await sql.deleteEventsBefore(db, olderThan, batch);
    deleted += count;
    if (count < batch) return deleted;
  }
}
