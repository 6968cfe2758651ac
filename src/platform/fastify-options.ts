// Fastify's options for the API: logging, request ids, proxies, the body limit, and the HTTP
// server with its timeouts and connection caps (http-server.ts).
import { type FastifyError, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Config } from '../config.ts';
import { requestId } from './http.ts';
import { clientErrorHandler, serverFactory } from './http-server.ts';
import { MAX_BODY_BYTES } from './json-body.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

// Answers an error Fastify meets before routing (a malformed %-escape in the path, an overlong
// parameter), in the envelope of the API the path belongs to.
export type FrameworkErrors = (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => void;

export function fastifyOptions(
  config: Config,
  metrics: Metrics,
  logger: Logger,
  frameworkErrors: FrameworkErrors,
) {
  const onClientError = (status: number) => metrics.clientErrors.inc({ status: String(status) });
  return {
    loggerInstance: logger,
    // One log line a request, written by the requests plugin's onResponse hook, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestId,
    trustProxy: config.trustedProxies.length > 0 ? [...config.trustedProxies] : false,
    bodyLimit: MAX_BODY_BYTES,
    exposeHeadRoutes: false,
    // Timeouts, connection caps and the lossless drain live in the server (platform/http-server.ts).
    serverFactory: serverFactory(config, {
      onRefused: (reason) => metrics.connectionsRefused.inc({ reason }),
      onClientError,
    }),
    forceCloseConnections: false,
    // Requests that arrive while closing are served (with `Connection: close`), not refused.
    return503OnClosing: false,
    clientErrorHandler: clientErrorHandler({ onClientError }),
    routerOptions: { maxParamLength: 4096 },
    frameworkErrors,
  };
}
