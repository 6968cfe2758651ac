// Flags of the callback service: where it listens, the upstream it asks, and how it keeps
// and hands out work. Its TTL and concurrency may change at run time: the service
// subscribes to them (callbacks.ts, through RuntimeSettings.onChange).
import {
  bool,
  duration,
  durationRange,
  type FlagValues,
  int,
  listenAddress,
  listenAddressRule,
  text,
  when,
} from '../platform/flags.ts';

export const callbacksFlags = {
  // false: `serve` runs no callback service in this process.
  'callbacks-enabled': bool({
    default: 'true',
    help: '`serve` runs the callback service (with `-workers N`, in one worker); `false` leaves it to `greenlight callbacks` elsewhere',
  }),
  'callbacks-addr': text({
    default: 'localhost:9090',
    help: '`host:port` of the callback listener (`:9090` = every interface, port `0` picks one); empty turns the listener off (the process still processes and sweeps)',
    rule: listenAddressRule(),
  }),
  'callbacks-upstream': text({
    default: 'http://localhost:9010',
    help: 'base URL of the object service (`GET /objects/{id}`)',
    rule: when((url) => /^https?:\/\/[^/\s]+(\/\S*)?$/.test(url), 'must be an http:// or https:// URL'),
  }),
  'callbacks-ttl': duration({
    default: '30s',
    help: 'objects not seen for this long are deleted (`1s` to `720h`)',
    runtime: true,
    rule: durationRange(1000, 720 * 3_600_000),
  }),
  'callbacks-concurrency': int({
    default: '200',
    help: 'upstream lookups in flight at once, per process (and upstream connections)',
    runtime: true,
    rule: when((n) => n >= 1 && n <= 100_000, 'must be between 1 and 100000'),
  }),
  'callbacks-upstream-timeout': duration({
    default: '5s',
    help: 'timeout of one lookup attempt (the upstream takes up to 4.3 s; 1ms-1h)',
    rule: durationRange(1, 3_600_000),
  }),
  'callbacks-lease': duration({
    default: '10s',
    help: 'a claimed callback whose process stops renewing it (crash) is claimed again after this long (300ms-1h)',
    rule: durationRange(300, 3_600_000),
  }),
  'callbacks-client-interval': duration({
    default: '5s',
    help: 'how often `greenlight callbacks client` posts (1ms-1h)',
    rule: durationRange(1, 3_600_000),
  }),
};

export function callbacksConfig(v: FlagValues<typeof callbacksFlags>) {
  return Object.freeze({
    enabled: v['callbacks-enabled'],
    // null: the listener is off (the service still runs).
    listen: listenAddress(v['callbacks-addr']),
    upstream: v['callbacks-upstream'].replace(/\/+$/, ''),
    ttlMs: v['callbacks-ttl'],
    concurrency: v['callbacks-concurrency'],
    upstreamTimeoutMs: v['callbacks-upstream-timeout'],
    leaseMs: v['callbacks-lease'],
    clientIntervalMs: v['callbacks-client-interval'],
  });
}

export type CallbacksConfig = ReturnType<typeof callbacksConfig>;
