// grpc.health.v1: SERVING while the instance is ready as GET /v1/readyz says (the database
// answers, its migrations are current, Redis answers when configured), NOT_SERVING otherwise
// and from the moment shutdown begins. The empty service name is the whole server.
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import {
  type Health,
  HealthCheckResponse_ServingStatus as Status,
} from '../../gen/grpc/health/v1/health_pb.js';
import { type ReadinessDeps, readiness } from '../operations/probes.routes.ts';

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
  const status = async (): Promise<Status> =>
    !deps.draining() && (await readiness(deps)).ready ? Status.SERVING : Status.NOT_SERVING;
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
        yield { status: Status.SERVICE_UNKNOWN };
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
