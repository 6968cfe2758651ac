// A change stream over gRPC: the SSE stream's machinery (src/realtime: the topic's one feed,
// the resume point, follow's exactly-once order, the owners re-checked while it runs, the
// stream metrics and log line), each event yielded as a message. A client that leaves more
// than -stream-max-buffered bytes unread is cut off (RESOURCE_EXHAUSTED); a withdrawn
// credential or permission ends the stream PERMISSION_DENIED, shutdown UNAVAILABLE (resume
// with after_event_id), a deadline DEADLINE_EXCEEDED.
import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import type { FastifyRequest } from 'fastify';
import { ValidationError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { resumePoint, type StreamEvent } from '../realtime/events.ts';
import {
  type EndReason,
  feedOf,
  follow,
  type RealtimeDeps,
  recordStream,
  startOf,
  type Viewer,
  viewing,
} from '../realtime/stream.ts';
import type { Topic } from '../realtime/topics.ts';
import { callerOf, credentialOf, whenAborted } from './calls.ts';

export type WatchDeps = RealtimeDeps & Readonly<{ logger: Logger }>;

export type Change = Readonly<{
  event: { id: bigint; type: string; occurredAt: string; prunedUpTo: bigint };
  // the record as the SSE event shows it (absent on a gap notice)
  data?: Readonly<Record<string, unknown>>;
}>;

const MAX_EVENT_ID = BigInt(Number.MAX_SAFE_INTEGER);

const ENDINGS: Partial<Record<EndReason, () => ConnectError>> = {
  slow_consumer: () => new ConnectError('the client read too slowly', Code.ResourceExhausted),
  shutdown: () => new ConnectError('server shutting down: resume with after_event_id', Code.Unavailable),
  error: () => new ConnectError('the event stream could not catch up', Code.Internal),
};

// Where the stream starts, as the SSE route works it out, before its first message.
async function opening(
  deps: WatchDeps,
  topic: Topic,
  afterEventId: bigint | undefined,
  context: HandlerContext,
) {
  const identity = callerOf(context);
  const credential = credentialOf(context);
  if (!identity || !credential) throw new Error('a stream without a credential passed its permission check');
  // The SSE route's range: an event id is a non-negative safe integer.
  if (afterEventId !== undefined && (afterEventId < 0n || afterEventId > MAX_EVENT_ID))
    throw new ValidationError({ after_event_id: 'must be a non-negative integer' });
  const feed = feedOf(deps, topic);
  const resume =
    afterEventId === undefined ? undefined : await resumePoint(deps.db, topic, Number(afterEventId));
  await feed.start();
  const start = await startOf(deps.db, topic, resume?.after);
  const viewer: Viewer = { identity };
  return { owner: { credential, userId: identity.id }, viewer, feed, start, gap: resume?.gap };
}

export async function* watchTopic(
  deps: WatchDeps,
  topic: Topic,
  afterEventId: bigint | undefined,
  context: HandlerContext,
): AsyncGenerator<Change> {
  const { owner, viewer, feed, start, gap } = await opening(deps, topic, afterEventId, context);

  const queue: StreamEvent[] = [];
  let unread = 0;
  let ended: ConnectError | null | undefined;
  let wake = () => {};
  let stopFollowing = () => {};
  let removeOwner = () => {};
  const log = { log: deps.logger, url: context.url } as unknown as Pick<FastifyRequest, 'log' | 'url'>;
  const record = recordStream('grpc', log, {
    metrics: deps.metrics,
    closers: deps.closers,
    shutdown: () => end('shutdown'),
  });
  const end = (reason: EndReason, error?: ConnectError) => {
    if (!record.finish(reason, unread)) return;
    ended = error ?? ENDINGS[reason]?.() ?? null;
    stopFollowing();
    removeOwner();
    wake();
  };
  whenAborted(context.signal, () =>
    end('closed', context.signal.reason instanceof ConnectError ? context.signal.reason : undefined),
  );
  removeOwner = deps.owners.add({
    ...owner,
    refusal: viewing(viewer, () => [topic]),
    end: (reason) => end('revoked', new ConnectError(reason, Code.PermissionDenied)),
  });
  follow(deps, feed, start, {
    viewer,
    send: (event) => {
      queue.push(event);
      unread += event.ws.length;
      if (unread > deps.config.maxBufferedBytes) end('slow_consumer');
      wake();
    },
    isOpen: () => ended === undefined,
    unread: () => unread,
  }).then(
    (unsubscribe) => {
      if (ended === undefined) stopFollowing = unsubscribe;
      else unsubscribe();
    },
    (err) => {
      deps.logger.error({ err }, 'event stream could not catch up');
      end('error');
    },
  );

  try {
    if (gap) {
      const prunedUpTo = BigInt(gap.pruned_up_to);
      yield { event: { id: 0n, type: 'gap', occurredAt: '', prunedUpTo } };
    }
    for (;;) {
      const event = queue.shift();
      if (event) {
        unread -= event.ws.length;
        record.countSent();
        yield changeOf(topic, event);
      } else if (ended !== undefined) {
        break;
      } else {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
    if (ended) throw ended;
  } finally {
    end('closed');
  }
}

function changeOf(topic: Topic, event: StreamEvent): Change {
  const { id, type, occurred_at, [topic.subject]: data } = event.data;
  return {
    event: {
      id: BigInt(id as number),
      type: type as string,
      occurredAt: occurred_at as string,
      prunedUpTo: 0n,
    },
    data: data as Record<string, unknown>,
  };
}
