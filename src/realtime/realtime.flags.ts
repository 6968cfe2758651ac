// Flags of the change streams (SSE and WebSocket): how long events are kept for resumes,
// how often idle streams are kept alive and feeds polled, and when a slow client is dropped.
import { duration, durationRange, type FlagValues, int, when } from '../platform/flags.ts';

export const realtimeFlags = {
  'events-retention': duration({
    default: '24h',
    help: 'how long movie and product events are kept for `Last-Event-ID` resumes (`1m` to `8760h`, a year); a resume from before the pruned ones gets a `gap` event',
    rule: durationRange(60_000, 8760 * 3_600_000),
  }),
  'events-heartbeat': duration({
    default: '15s',
    help: 'interval of the `: heartbeat` comment on idle SSE streams (100ms-5m)',
    rule: when((ms) => ms >= 100 && ms <= 300_000, 'must be between 100ms and 5m'),
  }),
  'events-poll': duration({
    default: '1s',
    help: "safety poll of each process's event feeds, which covers a lost notification (50ms-1m)",
    rule: when((ms) => ms >= 50 && ms <= 60_000, 'must be between 50ms and 1m'),
  }),
  'ws-ping': duration({
    default: '30s',
    help: 'WebSocket ping interval; a client that has not answered the previous ping is dropped (100ms-5m)',
    rule: when((ms) => ms >= 100 && ms <= 300_000, 'must be between 100ms and 5m'),
  }),
  'stream-max-buffered': int({
    default: '1048576',
    help: 'bytes an SSE or WebSocket client may leave unread before it is disconnected as a slow consumer (at least 1024; keep it above a batch of 500 events)',
    rule: when((n) => n >= 1024, 'must be at least 1024'),
  }),
};

export function eventsConfig(v: FlagValues<typeof realtimeFlags>) {
  return Object.freeze({
    retentionMs: v['events-retention'],
    heartbeatMs: v['events-heartbeat'],
    pollMs: v['events-poll'],
    wsPingMs: v['ws-ping'],
    // A client whose unsent bytes pass this is disconnected (slow consumer).
    maxBufferedBytes: v['stream-max-buffered'],
  });
}

export type EventsConfig = ReturnType<typeof eventsConfig>;
