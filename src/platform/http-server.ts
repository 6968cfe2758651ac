// The HTTP server under Fastify, with the connection policy a public API needs:
// - short header and request timeouts, checked every second (Node checks every 30 s by
//   default, which lets a slow-header client hold a socket four times longer than asked);
// - a cap on connections per client address and in total, so one address cannot take every
//   file descriptor while others wait; in a cluster each worker enforces its share, so the
//   caps hold for the instance as a whole;
// - a drain that loses no request: on close, a connection is cut only once it has been quiet
//   (no request in progress) for QUIET_MS; one that is mid-request finishes it, and every
//   response whose head is written after the listener closed says `Connection: close` and
//   closes its connection;
// - errors Node answers itself, before Fastify sees a request (malformed HTTP, timeouts,
//   oversized headers, an unsupported Expect, CONNECT), in the API's `{"error": ...}` envelope
//   with a request id;
// - a protocol switch only where one is served: a WebSocket handshake on a WebSocket route;
//   any other `Upgrade` (h2c, websocket elsewhere, a handshake that is not one) is served as
//   the plain HTTP/1.1 request it also is, as Go does; a switched connection is left to
//   its WebSocket close by the drain;
// - a complete request followed by the client's FIN (a half-close) is still answered.
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import { type ListenOptions, Server as NetServer, type Socket } from 'node:net';
import type { Config } from '../config.ts';
import {
  type EffectiveCaps,
  effectiveMaxConnections,
  perAddressCap,
  proxyMatcher,
  shareOfCaps,
} from './connection-caps.ts';
import { sampleRequests } from './tracing.ts';

// From the CommonJS module: an ES import of node:http reads its lazy `WebSocket` property,
// which loads Node's bundled undici (about 13 MiB resident, nodejs/node#59686) into every
// worker, whether or not anything ever uses it.
const { Server, STATUS_CODES } = process.getBuiltinModule('node:http');

export type ConnectionPolicy = Readonly<{
  headerTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  // For the whole instance: a listener that shares its port with the instance's other
  // workers enforces its share of each (shareOfCaps)...
  maxConnections: number;
  // ...except a maxConnections derived from this process's own open-files limit.
  maxConnectionsPerProcess: boolean;
  // 0: no cap per address
  maxConnectionsPerAddress: number;
  // serving processes of the instance that share the port (1 outside a cluster)
  workers: number;
  // Addresses exempt from the per-address cap: trusted proxies carry many clients.
  isProxy: (address: string) => boolean;
}>;

export type ServerEvents = Readonly<{
  // A connection refused for being over a cap.
  onRefused?: (reason: 'per_address' | 'total', address: string) => void;
  // An error answered below Fastify (status 400, 408, 417, 431).
  onClientError?: (status: number) => void;
}>;

type Connection = { address: string; inFlight: number; quietSince: number };

// A drained connection that has carried no request for this long is closed; a client that
// sends its next request on it sooner gets an answer (and `Connection: close`) instead of a
// reset.
export const QUIET_MS = 500;

export const CLIENT_ERROR_MESSAGES: Readonly<Record<number, string>> = {
  400: 'the request is not valid HTTP',
  405: 'the CONNECT method is not supported for this resource',
  408: 'the request took too long to arrive',
  417: 'the Expect header is not supported (only 100-continue is)',
  431: 'the request headers are too large',
};

// A whole response for a socket that has no ServerResponse (yet): status, envelope, request id.
export function rawErrorResponse(
  status: number,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): string {
  const body = JSON.stringify({ error: message });
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Request-Id: ${randomUUID()}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}

// What a 405 to CONNECT offers instead: the methods routes are served with.
const ALLOWED_METHODS = 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT';

const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = {
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  HPE_HEADER_OVERFLOW: 431,
};

// Fastify's clientErrorHandler: Node's parser or its timeouts refused the bytes on `socket`.
export function clientErrorHandler(events: ServerEvents) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const status = CLIENT_ERROR_STATUS[err.code ?? ''] ?? 400;
    events.onClientError?.(status);
    // As Node's own handler: answer unless a response has already begun on this socket.
    const pending = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (socket.writable && !pending?.headersSent) {
      socket.write(rawErrorResponse(status, CLIENT_ERROR_MESSAGES[status] as string));
    }
    socket.destroy();
  };
}

// RFC 6455 §4.2.1: what makes a request a WebSocket opening handshake (ws checks the same and
// answers anything less with a bare text/html 400).
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;

function isWebSocketHandshake(req: IncomingMessage): boolean {
  const { upgrade, connection } = req.headers;
  const version = req.headers['sec-websocket-version'];
  const key = req.headers['sec-websocket-key'];
  return (
    req.method === 'GET' &&
    upgrade?.toLowerCase() === 'websocket' &&
    (connection ?? '')
      .toLowerCase()
      .split(',')
      .some((token) => token.trim() === 'upgrade') &&
    (version === '13' || version === '8') &&
    typeof key === 'string' &&
    WEBSOCKET_KEY.test(key)
  );
}

export class GreenlightServer extends Server {
  // Paths of the WebSocket routes (static paths; the app adds them as it registers routes).
  readonly webSocketPaths = new Set<string>();
  readonly #policy: ConnectionPolicy;
  readonly #events: ServerEvents;
  readonly #connections = new Map<Socket, Connection>();
  readonly #withinAddressCap = perAddressCap(
    () => this.#caps.maxConnectionsPerAddress,
    (address) => this.#policy.isProxy(address),
  );
  // responses whose head is not written yet, or that are being written
  readonly #pending = new Set<ServerResponse>();
  #caps: EffectiveCaps;
  #draining = false;
  #sweep: NodeJS.Timeout | undefined;

  constructor(
    handler: (req: IncomingMessage, res: ServerResponse) => void,
    policy: ConnectionPolicy,
    events: ServerEvents = {},
  ) {
    const options: ServerOptions = {
      headersTimeout: policy.headerTimeoutMs,
      requestTimeout: policy.requestTimeoutMs,
      keepAliveTimeout: policy.idleTimeoutMs,
      connectionsCheckingInterval: 1000,
      // A request without Host is refused by the app in the API's envelope, not here with an
      // empty body.
      requireHostHeader: false,
      // Anything else with an Upgrade header reaches the app as a plain request: the
      // WebSocket plugin would otherwise upgrade it on any path (101, then a close) or let ws
      // answer a bad handshake in text/html.
      shouldUpgradeCallback: (req) =>
        isWebSocketHandshake(req) && this.webSocketPaths.has((req.url ?? '').split('?')[0] as string),
    };
    super(options, handler);
    // Node's default ends the socket and aborts the request in progress when the client
    // half-closes (`printf 'GET / HTTP/1.0\r\n\r\n' | nc -q`): the response of a handler
    // that waits had nowhere to go. Half-open, the response is written, then the socket ends.
    (this as { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;
    this.#policy = policy;
    this.#events = events;
    this.#caps = {
      maxConnections: policy.maxConnections,
      maxConnectionsPerAddress: policy.maxConnectionsPerAddress,
    };
    this.maxConnections = policy.maxConnections;
    this.on('connection', (socket: Socket) => this.#accept(socket));
    // Before the handler, which may answer at once.
    this.prependListener('request', (req: IncomingMessage, res: ServerResponse) => this.#track(req, res));
    this.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
      events.onClientError?.(417);
      const body = JSON.stringify({ error: CLIENT_ERROR_MESSAGES[417] });
      res.writeHead(417, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-request-id': randomUUID(),
        connection: 'close',
      });
      res.end(body);
    });
    // Not a proxy: Node would close the connection without a word.
    this.on('connect', (_req: IncomingMessage, socket: Socket) => {
      events.onClientError?.(405);
      socket.on('error', () => {});
      const answer = rawErrorResponse(405, CLIENT_ERROR_MESSAGES[405] as string, { allow: ALLOWED_METHODS });
      // The socket is no longer Node's: no timeout would close it if the client kept it open.
      socket.end(answer, () => socket.destroy());
    });
    this.on('drop', (data?: { remoteAddress?: string }) =>
      events.onRefused?.('total', data?.remoteAddress ?? ''),
    );
    // 'close' may come more than once: after stopAccepting() drains, and again for close().
    this.on('close', () => clearInterval(this.#sweep));
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  // The caps this process enforces (its share when the port is shared by workers).
  get caps(): EffectiveCaps {
    return this.#caps;
  }

  // A listener that shares its port with the instance's other workers (reusePort, or the
  // primary's handle for port 0) takes its share of the caps; one bound by one worker alone
  // (exclusive, the callback listener) keeps them whole.
  override listen(...args: unknown[]): this {
    const [options] = args;
    const shared =
      cluster.isWorker &&
      typeof options === 'object' &&
      options !== null &&
      ((options as ListenOptions).reusePort === true || (options as ListenOptions).exclusive !== true);
    if (shared) {
      this.#caps = shareOfCaps(this.#policy, this.#policy.workers, this.#policy.maxConnectionsPerProcess);
      this.maxConnections = this.#caps.maxConnections;
    }
    return (Server.prototype.listen as (...a: unknown[]) => this).apply(this, args);
  }

  // Closes the listener and nothing else: connections stay open and keep alive. A cluster
  // stops every worker's listener this way before any worker drains, so that a client told
  // `Connection: close` by one worker does not reconnect into another worker's accept queue
  // just before that one closes (closing a listener resets the connections queued on it).
  stopAccepting(): void {
    if (this.listening) NetServer.prototype.close.call(this);
  }

  // The connection carries another protocol now (its 101 is written): no more HTTP requests,
  // so it never turns quiet, and the drain leaves it to its owner (the WebSocket plugin closes
  // it with 1001 at shutdown). Counted as quiet since its handshake, it was cut without a
  // close frame. A handshake that was refused is an HTTP exchange like any other.
  switchedProtocols(socket: Socket): void {
    const connection = this.#connections.get(socket);
    if (connection) connection.inFlight++;
  }

  // Node's close() calls this, just before closing the listener, to drop idle keep-alive
  // connections at once, which resets a request the client has just sent on one. Instead,
  // from now on every response not yet begun says `Connection: close`, and a connection is
  // closed only once it has been quiet for QUIET_MS (that also covers slow clients that never
  // completed a request); the check repeats until the server has closed.
  override closeIdleConnections(): void {
    this.#drain();
  }

  // The grace period's end: every connection goes, switched ones too, which Node's own list
  // loses at the switch (ours holds every accepted socket), so a WebSocket whose handshake
  // finished after the streams were told to end cannot hold the process.
  override closeAllConnections(): void {
    for (const socket of this.#connections.keys()) socket.destroy();
  }

  // What close() does, listener first; `serve` calls it first thing at shutdown, before the
  // app's close hooks (which may wait for streams to end). Never with the listener open: a
  // client told to close would reconnect into it.
  drain(): void {
    this.stopAccepting();
    this.#drain();
  }

  // close() itself closes the listener right after this, in the same tick.
  #drain(): void {
    if (!this.#draining) {
      this.#draining = true;
      for (const res of this.#pending) if (!res.headersSent) res.shouldKeepAlive = false;
    }
    this.#closeQuiet();
    this.#sweep ??= setInterval(() => this.#closeQuiet(), 50);
  }

  #accept(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    if (!this.#withinAddressCap(socket)) {
      // Cut at once: answering would mean reading the request, which is what the cap saves.
      this.#events.onRefused?.('per_address', address);
      socket.destroy();
      return;
    }
    this.#connections.set(socket, { address, inFlight: 0, quietSince: performance.now() });
    socket.once('close', () => this.#connections.delete(socket));
  }

  #track(req: IncomingMessage, res: ServerResponse): void {
    // Whoever writes the response (a route, an error handler, a hijacked stream, Node itself).
    if (this.#draining) res.shouldKeepAlive = false;
    // An answer given before the whole body arrived (a 413, a refused credential): the rest
    // is read and discarded, so the client can finish sending and read the answer. Node does
    // this itself only when nobody began reading the body; a decoder that stopped part-way
    // would otherwise leave the client blocked until -read-timeout.
    res.once('finish', () => {
      if (!req.complete && !req.destroyed) req.resume();
    });
    const connection = this.#connections.get(req.socket);
    if (!connection) return;
    connection.inFlight++;
    this.#pending.add(res);
    res.once('close', () => {
      this.#pending.delete(res);
      connection.inFlight--;
      connection.quietSince = performance.now();
    });
  }

  #closeQuiet(): void {
    const now = performance.now();
    for (const [socket, connection] of this.#connections) {
      if (connection.inFlight === 0 && now - connection.quietSince >= QUIET_MS) socket.destroy();
    }
  }
}

// Fastify's serverFactory for a listener of this service, with the configured policy.
// `minIdleTimeoutMs`: a listener whose clients come back at a known rhythm keeps idle
// connections at least that long.
export function serverFactory(config: Config, events: ServerEvents = {}, minIdleTimeoutMs = 0) {
  return (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
    new GreenlightServer(
      sampleRequests(handler),
      {
        headerTimeoutMs: config.http.readHeaderTimeoutMs,
        requestTimeoutMs: config.http.readTimeoutMs,
        idleTimeoutMs: Math.max(config.http.idleTimeoutMs, minIdleTimeoutMs),
        maxConnections: effectiveMaxConnections(config.http.maxConnections),
        maxConnectionsPerProcess: config.http.maxConnections === 0,
        maxConnectionsPerAddress: config.http.maxConnectionsPerIp,
        workers: config.workers,
        isProxy: proxyMatcher(config.trustedProxies),
      },
      events,
    );
}

// How a listener binds in a cluster worker. A port shared through the primary is accepted
// there and handed to the workers one connection at a time, each handoff waiting for the
// receiving worker's event loop: under load, 50 new connections took up to a second to be
// served (docs/performance.md). Each worker binds the port itself instead, with SO_REUSEPORT
// (Linux), and the kernel spreads connections. Port 0 must be picked once for all workers,
// so it stays shared. `alone`: only one worker listens (the callback listener).
export function workerListenOptions(
  port: number,
  alone = false,
): { exclusive?: boolean; reusePort?: boolean } {
  if (!cluster.isWorker) return {};
  if (alone) return { exclusive: true };
  return port !== 0 && process.platform === 'linux' ? { exclusive: true, reusePort: true } : {};
}
