// What every call goes through before its method runs, and after: a server span continuing
// the caller's trace, authentication from the `authorization` (or `x-api-key`) metadata by the
// authenticators HTTP uses, the rate limiter with HTTP's keys, the deadline, the mapping of a
// failure to its status (errors.ts), the metrics and one log line, as HTTP's request line.
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from '@connectrpc/connect';
import type { Identity } from '../accounts/user.ts';
import type { Authenticator, Credential } from '../auth/authenticator.ts';
import { headerCredential, identityOf } from '../auth/registry.ts';
import { type Db, withDeadline } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import type { RequestLimits } from '../platform/rate-limit.plugin.ts';
import { inSpan, traceCarrierOf } from '../platform/tracing.ts';
import { type Dialect, toConnectError } from './errors.ts';
import { codeName, type GrpcMetrics } from './grpc.metrics.ts';

// The peer's address, set per request by the adapter (grpc.ts).
export const CLIENT_IP = createContextKey('', { description: 'client address' });
const IDENTITY = createContextKey<Identity | null>(null, { description: 'identity' });
const CREDENTIAL = createContextKey<Credential | undefined>(undefined, { description: 'credential' });

export type CallDeps = Readonly<{
  authenticators: readonly Authenticator[];
  limits: RequestLimits;
  metrics: GrpcMetrics;
  logger: Logger;
  // whose error messages each service's calls carry, by the service's full name
  dialects: ReadonlyMap<string, Dialect>;
  // services no rate limit applies to (health, as HTTP's probes)
  unlimited: ReadonlySet<string>;
}>;

export const callerOf = (context: HandlerContext): Identity | null => context.values.get(IDENTITY);
export const credentialOf = (context: HandlerContext): Credential | undefined =>
  context.values.get(CREDENTIAL);

// The pool for a call's use cases: its statements end with the call's deadline.
export const callDb = (db: Db, context: HandlerContext): Db => withDeadline(db, context.timeoutMs);

async function admit(deps: CallDeps, header: Headers, values: ContextValues, service: string): Promise<void> {
  const ip = values.get(CLIENT_IP);
  const credential = headerCredential(
    { authorization: header.get('authorization') ?? undefined, 'x-api-key': header.get('x-api-key') },
    true,
  );
  let identity: Identity | null = null;
  if (credential) {
    const address = { ip };
    identity = await identityOf(
      deps.authenticators,
      credential,
      () => deps.limits.addressBudget.check(address),
      () => deps.limits.addressBudget.charge(address),
    );
    values.set(IDENTITY, identity);
    values.set(CREDENTIAL, credential);
  }
  if (!deps.unlimited.has(service)) await deps.limits.limit({ ip, identity });
}

// `then` once the signal aborts, or at once if it has: its abort event has fired by then and
// would never reach a listener added now (a call that ended while it was starting).
export function whenAborted(signal: AbortSignal, then: () => void): void {
  if (signal.aborted) then();
  else signal.addEventListener('abort', then, { once: true });
}

// Rejects with the signal's reason once it is aborted (a deadline: DEADLINE_EXCEEDED).
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => whenAborted(signal, () => reject(signal.reason)));
}

export function callInterceptor(deps: CallDeps): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const service = req.service.typeName;
    const method = req.method.name;
    const dialect = deps.dialects.get(service) ?? 'book';
    const ip = req.contextValues.get(CLIENT_IP);
    const finish = (code: number) => {
      const seconds = (performance.now() - started) / 1000;
      deps.metrics.called(service, method, code, seconds);
      deps.logger.info(
        {
          protocol: req.header.get('content-type')?.split(/[+;]/)[0] ?? '',
          service,
          method,
          code: codeName(code),
          duration_ms: Math.round(seconds * 1e6) / 1000,
          remote_ip: ip,
        },
        'rpc',
      );
    };
    // Once the call is over for the client (it reset the stream, its deadline passed), what
    // its work runs into next (a write to the closed stream, a cancelled statement) is that
    // ending, not a bug.
    const failure = (err: unknown): ConnectError =>
      req.signal.aborted && !(err instanceof ConnectError)
        ? ConnectError.from(req.signal.reason, Code.Canceled)
        : toConnectError(err, dialect, deps.logger);
    const carrier = traceCarrierOf((name) => req.header.get(name));
    const attributes = { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method };
    try {
      const response = await inSpan(
        `${service}/${method}`,
        { kind: 'SERVER', attributes, from: carrier },
        async () => {
          await admit(deps, req.header, req.contextValues, service);
          if (req.stream) return next(req);
          const answer = next(req);
          // The use case goes on until its statement is cancelled; its outcome no longer matters.
          answer.catch(() => {});
          return Promise.race([answer, untilAborted(req.signal)]);
        },
      );
      if (!response.stream) {
        finish(0);
        return response;
      }
      return { ...response, message: finished(response, failure, finish) };
    } catch (err) {
      const error = failure(err);
      finish(error.code);
      throw error;
    }
  };
}

// A stream's messages, its failure mapped like a unary call's, recorded when it ends.
async function* finished<M>(
  response: { message: AsyncIterable<M> },
  failure: (err: unknown) => ConnectError,
  finish: (code: number) => void,
): AsyncGenerator<M> {
  let code = 0;
  try {
    yield* response.message;
  } catch (err) {
    const error = failure(err);
    code = error.code;
    throw error;
  } finally {
    finish(code);
  }
}
