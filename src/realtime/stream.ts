// What every change stream shares, SSE or WebSocket: its dependencies, following a topic's
// feed from a position exactly once and in order, and the metrics, shutdown and log line of
// an open stream.
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyRequest } from 'fastify';
import type { Identity } from '../accounts/user.ts';
import { requestCredential } from '../auth/registry.ts';
import type { EventsConfig } from '../config.ts';
import type { Db } from '../platform/db.ts';
import type { Metrics } from '../platform/metrics.ts';
import {
  type EndedTransactions,
  endedNow,
  eventsAfter,
  isAfter,
  lastPosition,
  type Position,
  type StreamEvent,
} from './events.ts';
import type { EventFeed } from './feed.ts';
import type { Reauthenticate, StreamOwners } from './owners.ts';
import type { Topic } from './topics.ts';

export type RealtimeDeps = Readonly<{
  db: Db;
  // one per topic, by topic name
  feeds: ReadonlyMap<string, EventFeed>;
  owners: StreamOwners;
  config: EventsConfig;
  metrics: Metrics;
  // The identity behind a credential, as a request's would be found (src/auth/registry.ts).
  reauthenticate: Reauthenticate;
  // Ends every open stream; the app calls each at shutdown, before the WebSocket server closes.
  closers: Set<() => void>;
}>;

const CATCH_UP_BATCH = 500;
const PACE_MS = 10;
// While committed events of a resume's catch-up wait behind a running transaction, it reads
// again when the feed passes that transaction (but not sooner than HIDDEN_GAP_MS after its
// last read), or after HIDDEN_RETRY_MS, for at most HIDDEN_WAIT_MS in all (see follow).
const HIDDEN_GAP_MS = 100;
const HIDDEN_RETRY_MS = 1_000;
const HIDDEN_WAIT_MS = 30_000;

export type EndReason = 'closed' | 'slow_consumer' | 'revoked' | 'unresponsive' | 'shutdown' | 'error';

// Who a stream sends to, for the topics whose events are not all for every reader
// (Topic.visible). The owner re-checks (src/realtime/owners.ts) keep it current through
// viewing(): an admin made a user mid-stream stops receiving others' events by the next check.
export type Viewer = { identity: Identity };

// The owner re-check's refusal for a stream of `viewer` reading `topics`: it also takes the
// identity it is given as the one the stream filters by.
export const viewing =
  (viewer: Viewer, topics: () => Iterable<Topic>) =>
  (identity: Identity): Error | null => {
    viewer.identity = identity;
    for (const topic of topics()) {
      const refused = topic.refusal(identity);
      if (refused) return refused;
    }
    return null;
  };

// A stream's client as follow() sees it.
type Follower = Readonly<{
  viewer: Viewer;
  send: (event: StreamEvent) => void;
  isOpen: () => boolean;
  // bytes written to the client and not yet taken by it
  unread: () => number;
}>;

// Where a stream starts: after a position the client was sent (a resume), or now: after the
// last event that can be delivered, passing over the events of every transaction that has
// ended (some may not be deliverable yet while an older transaction runs). Taken before the
// client is told its stream is open (the SSE 200, the WebSocket "subscribed"), so every change
// committed after that reaches it: a transaction still running then has a higher position.
export type Start = Readonly<{ after: Position; past?: EndedTransactions }>;

export async function startOf(db: Db, topic: Topic, after: Position | undefined): Promise<Start> {
  if (after !== undefined) return { after };
  // Either order is exact; the snapshot first makes "now" as early as it can be.
  const past = await endedNow(db);
  return { after: await lastPosition(db, topic), past };
}

// Sends every event after the start exactly once and in the delivery order: the feed's live
// events are held while the outbox is read up to them. Catching up waits while the client has
// more than half its bound unread, so a resume from far back is paced by the client instead
// of cutting it off as a slow consumer. What is held is bounded too (by -stream-max-buffered):
// past it the held events are let go and read again from the outbox, so a client that stops
// reading while it catches up costs no more memory however much is written meanwhile.
// An event the viewer may not see (Topic.visible) is passed over like one from the past: the
// client never learns of it, and resumes from the ids it was sent.
export async function follow(
  { db, config }: RealtimeDeps,
  feed: EventFeed,
  { after, past }: Start,
  { viewer, send, isOpen, unread }: Follower,
): Promise<() => void> {
  const visible = feed.topic.visible;
  let cursor: Position = after;
  const live = heldEvents(config.maxBufferedBytes);
  let holding = true;
  const deliver = (event: StreamEvent) => {
    if (!isAfter(event.position, cursor)) return;
    // Passed over, but passed: the catch-up reads on from there.
    cursor = event.position;
    if (past?.has(event.position)) return;
    if (
      !visible ||
      visible(viewer.identity, event.data[feed.topic.subject] as Readonly<Record<string, unknown>>)
    )
      send(event);
  };
  const paced = async (event: StreamEvent) => {
    while (isOpen() && unread() > config.maxBufferedBytes / 2) await sleep(PACE_MS);
    if (isOpen()) deliver(event);
  };
  let fedWhileHeld: (() => void) | undefined;
  const unsubscribe = await feed.subscribe((events) => {
    // A backlog from before this follower came is passed over a batch at a time.
    if (past && (events.at(-1)?.position.xid ?? 0n) < past.xmin) return;
    if (holding) {
      live.add(events);
      fedWhileHeld?.();
    } else for (const event of events) if (isOpen()) deliver(event);
  });
  try {
    // For a resume, a short read that says committed events wait behind a running transaction
    // (a long import, a writer in another database of the cluster) is not the end of the
    // backlog: the feed would deliver those events all at once when the transaction ends,
    // unpaced, and cut off a client far behind as a slow consumer. The catch-up reads them
    // itself, paced, while the feed's events are held; it reads again when the feed (which
    // re-reads while events wait, one reader for the process) brings a batch, so waiting
    // clients do not each poll the database. Past HIDDEN_WAIT_MS it leaves the rest to the
    // feed. A new stream (`past`) has no backlog: it goes live at once, as under steady writes
    // some event nearly always waits on a writer still running.
    const waitUntil = Date.now() + HIDDEN_WAIT_MS;
    while (isOpen()) {
      const { events, pending } = await eventsAfter(db, feed.topic, cursor, CATCH_UP_BATCH);
      for (const event of events) await paced(event);
      if (!isOpen()) break;
      if (events.length === CATCH_UP_BATCH || live.lost()) continue;
      if (!pending || past || Date.now() >= waitUntil) {
        for (let event = live.next(); event; event = live.next()) await paced(event);
        if (live.lost()) continue;
        break;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, HIDDEN_RETRY_MS);
        fedWhileHeld = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      fedWhileHeld = undefined;
      await sleep(HIDDEN_GAP_MS);
    }
    holding = false;
  } catch (err) {
    unsubscribe();
    throw err;
  }
  return unsubscribe;
}

// The feed's live events held while a follower catches up, at most `maxBytes` of them: past
// that they are let go, and the catch-up reads them again from the outbox (where every event
// the feed brings already is).
function heldEvents(maxBytes: number) {
  const events: StreamEvent[] = [];
  let bytes = 0;
  let letGo = false;
  return {
    add(batch: readonly StreamEvent[]): void {
      for (const event of batch) {
        events.push(event);
        bytes += event.sse.length;
      }
      if (bytes <= maxBytes) return;
      events.length = 0;
      bytes = 0;
      letGo = true;
    },
    // The oldest held event; none once they were let go, until lost() is asked.
    next(): StreamEvent | undefined {
      const event = letGo ? undefined : events.shift();
      if (event) bytes -= event.sse.length;
      return event;
    },
    // Whether events were let go since the last time it was asked.
    lost(): boolean {
      const was = letGo;
      letGo = false;
      return was;
    },
  };
}

// What every stream keeps the same way: the open and ended metrics, its place among the streams
// shutdown ends, and one log line when it ends (its reply is hijacked: no request log).
export function recordStream(
  transport: 'sse' | 'websocket' | 'grpc',
  request: Pick<FastifyRequest, 'log' | 'url'>,
  { metrics, closers, shutdown }: { metrics: Metrics; closers: Set<() => void>; shutdown: () => void },
) {
  const started = performance.now();
  let sent = 0;
  let finished = false;
  metrics.streamsOpen.inc({ transport });
  closers.add(shutdown);
  return {
    countSent: () => {
      sent++;
    },
    // false when it had already ended
    finish: (reason: EndReason, bufferedBytes: number): boolean => {
      if (finished) return false;
      finished = true;
      closers.delete(shutdown);
      metrics.streamsOpen.dec({ transport });
      metrics.streamsEnded.inc({ transport, reason });
      request.log.info(
        {
          transport,
          path: request.url,
          duration_ms: Math.round(performance.now() - started),
          events_sent: sent,
          buffered_bytes: bufferedBytes,
          reason,
        },
        'stream ended',
      );
      return true;
    },
  };
}

export function ownerOf(request: FastifyRequest) {
  const identity = request.identity as Identity;
  const credential = requestCredential(request);
  if (!credential) throw new Error('a stream without a credential passed authentication');
  return { credential, userId: identity.id };
}

export function feedOf(deps: RealtimeDeps, topic: Topic): EventFeed {
  const feed = deps.feeds.get(topic.name);
  if (!feed) throw new Error(`no event feed for the topic ${topic.name}`);
  return feed;
}
