// grpc.health.v1: SERVING while the instance is ready as GET /v1/readyz says (the database
// answers, its migrations are current, Redis answers when configured), NOT_SERVING otherwise
// and from the moment shutdown begins. The empty service name is the whole server.
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import {
  type Health,
  HealthCheckResponse_ServingStatus as Status,
} from '../../gen/grpc/health/v1/health_pb.js';
import { cachedReadiness, type ReadinessDeps } from '../operations/probes.routes.ts';
import { whenAborted } from './calls.ts';

// How often Watch looks again for a change to report.
const WATCH_INTERVAL_MS = 1_000;

export type HealthDeps = ReadinessDeps &
  Readonly<{
    // the names a client may ask about, besides ''
    services: readonly string[];
    draining: () => boolean;
  }>;

export function healthService(deps: HealthDeps): ServiceImpl<typeof Health> {
  const known = new Set(['', ...deps.services]);
  // One readiness check a second at most, whoever asks: health needs no credential and no
  // rate limit (probes), so thousands of Check calls or Watch streams must not each take a
  // database connection.
  const currentReadiness = cachedReadiness(deps);
  const isReady = async (): Promise<boolean> => (await currentReadiness()).ready;
  const status = async (): Promise<Status> =>
    !deps.draining() && (await isReady()) ? Status.SERVING : Status.NOT_SERVING;
  return {
    async check(request) {
      if (!known.has(request.service)) throw new ConnectError('unknown service', Code.NotFound);
      return { status: await status() };
    },
    async list() {
      const now = await status();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: now }])) };
    },
    async *watch(request, context) {
      if (!known.has(request.service)) {
        // The protocol keeps the call open (the service might become known): until the client
        // or the deadline ends it.
        yield { status: Status.SERVICE_UNKNOWN };
        await new Promise<void>((resolve) => whenAborted(context.signal, resolve));
        return;
      }
      let last: Status | undefined;
      while (!context.signal.aborted) {
        const now = await status();
        if (now !== last) yield { status: now };
        last = now;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, WATCH_INTERVAL_MS);
          context.signal.addEventListener('abort', () => resolve(clearTimeout(timer)), { once: true });
        });
      }
    },
  };
}
