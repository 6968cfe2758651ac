// The gRPC listener: one port for gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1 or HTTP/2).
// Cleartext, the first bytes of a connection decide: HTTP/2's preface goes to the HTTP/2
// server (h2c with prior knowledge, as gRPC clients connect), anything else to an HTTP/1.1
// server (curl, browsers' gRPC-Web); with -grpc-http1=false every connection is HTTP/2's.
// With TLS, ALPN decides (h2, else http/1.1).
// Shutdown is graceful: the port closes, HTTP/2 connections get GOAWAY and finish their
// calls, idle HTTP/1.1 connections close; whatever is left when the grace period ends is cut.
// Its limits are the HTTP port's (connections in all and per address, the header, request and
// idle timeouts), and -grpc-max-streams calls at once per HTTP/2 connection.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, {
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import net, { type Socket } from 'node:net';
import type { Config } from '../config.ts';
import {
  type EffectiveCaps,
  effectiveMaxConnections,
  perAddressCap,
  proxyMatcher,
  shareOfCaps,
} from '../platform/connection-caps.ts';
import { workerListenOptions } from '../platform/http-server.ts';
import { explainListenError } from '../platform/ports.ts';

// Not an ES import: see src/platform/http-server.ts.
const http = process.getBuiltinModule('node:http');

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export type GrpcListener = Readonly<{
  port: number;
  // stops accepting and lets the calls in progress finish
  drain: () => void;
  // resolves once every connection has closed
  closed: Promise<void>;
  // cuts what is left
  destroy: () => void;
}>;

const PREFACE = 'PRI * HTTP/2.0';
// Idle HTTP/1.1 keep-alive connections, checked this often while draining.
const SWEEP_MS = 50;

// HTTP/2 when the bytes so far are the start of its preface (a client sends it whole at once).
function isHttp2(first: Buffer): boolean {
  const text = first.subarray(0, PREFACE.length).toString('latin1');
  return PREFACE.startsWith(text);
}

function servers(handler: Handler, config: Config) {
  const { tls } = config.grpc;
  const options = { maxSessionMemory: 32, settings: { maxConcurrentStreams: config.grpc.maxStreams } };
  if (tls) {
    const secure = http2.createSecureServer(
      { ...options, cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), allowHTTP1: true },
      handler,
    );
    return { outer: secure as net.Server, h2: secure, h1: undefined };
  }
  const h2 = http2.createServer(options, handler);
  if (!config.grpc.http1) return { outer: h2 as net.Server, h2, h1: undefined };
  const h1 = http.createServer(
    {
      keepAliveTimeout: config.http.idleTimeoutMs,
      headersTimeout: config.http.readHeaderTimeoutMs,
      requestTimeout: config.http.readTimeoutMs,
    },
    handler,
  );
  // HTTP/2 writes small frames: without noDelay they would wait for the peer's ACK.
  const outer = net.createServer({ noDelay: true }, (socket) => {
    // A connection that says nothing is closed as the HTTP port closes one whose headers do
    // not come.
    socket.setTimeout(config.http.readHeaderTimeoutMs, () => socket.destroy());
    socket.once('data', (first) => {
      socket.setTimeout(0);
      socket.pause();
      // Node's HTTP/2 session first takes in what the socket has buffered, then reads its
      // handle natively: the bytes read to tell the protocol are given back to either server.
      socket.unshift(first);
      if (isHttp2(first)) {
        h2.emit('connection', socket);
        return;
      }
      h1.emit('connection', socket);
      socket.resume();
    });
  });
  return { outer, h2, h1 };
}

// The HTTP port's caps on connections (-max-connections, -max-connections-per-ip), for this
// port on its own; each worker that shares the port takes its share, as on the HTTP port.
function connectionCaps(config: Config): EffectiveCaps {
  const whole = {
    maxConnections: effectiveMaxConnections(config.http.maxConnections),
    maxConnectionsPerAddress: config.http.maxConnectionsPerIp,
  };
  return cluster.isWorker ? shareOfCaps(whole, config.workers, config.http.maxConnections === 0) : whole;
}

// A connection that has had no call open for -idle-timeout is closed (GOAWAY: a client
// reconnects when it next calls), as the HTTP port closes an idle keep-alive connection.
function closeWhenIdle(session: Http2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => session.close(), idleMs).unref();
  };
  arm();
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once('close', () => {
      open--;
      if (open === 0 && !session.closed) arm();
    });
  });
  session.once('close', () => clearTimeout(timer));
}

// Reflection is the one call whose client keeps sending (a stream of requests).
const CLIENT_STREAMING = /^\/grpc\.reflection\./;

// A call whose request has not all arrived within -read-timeout is reset (CANCEL), as the HTTP
// port answers 408: a client that sends half a message and waits must not hold its memory and
// its call for ever. Every other call's client sends one message and ends its side.
function limitRequestTime(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, timeoutMs: number): void {
  if (stream.endAfterHeaders || CLIENT_STREAMING.test(headers[':path'] ?? '')) return;
  const timer = setTimeout(() => {
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  }, timeoutMs).unref();
  stream.once('end', () => clearTimeout(timer));
  stream.once('close', () => clearTimeout(timer));
}

export async function listenGrpc(handler: Handler, config: Config): Promise<GrpcListener> {
  const listen = config.grpc.listen;
  if (!listen) throw new Error('the gRPC listener is off (-grpc-addr is empty)');
  const { outer, h2, h1 } = servers(handler, config);
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  h2.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    closeWhenIdle(session, config.http.idleTimeoutMs);
  });
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) =>
    limitRequestTime(stream, headers, config.http.readTimeoutMs),
  );
  const caps = connectionCaps(config);
  outer.maxConnections = caps.maxConnections;
  const withinAddressCap = perAddressCap(
    () => caps.maxConnectionsPerAddress,
    proxyMatcher(config.trustedProxies),
  );
  outer.on('connection', (socket: Socket) => {
    if (!withinAddressCap(socket)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    outer.once('error', (err) => reject(explainListenError(err, listen.host, listen.port, '-grpc-addr')));
    outer.listen({ host: listen.host, port: listen.port, ...workerListenOptions(listen.port) }, resolve);
  });
  let sweep: NodeJS.Timeout | undefined;
  const closed = new Promise<void>((resolve) => {
    const check = () => {
      if (sockets.size > 0 || outer.listening) return;
      clearInterval(sweep);
      resolve();
    };
    outer.on('close', check);
    outer.on('connection', (socket: Socket) => socket.once('close', check));
  });
  return {
    port: (outer.address() as net.AddressInfo).port,
    drain: () => {
      outer.close();
      for (const session of sessions) session.close();
      h2.on('session', (session: Http2Session) => session.close());
      h1?.closeIdleConnections();
      sweep ??= setInterval(() => h1?.closeIdleConnections(), SWEEP_MS);
    },
    closed,
    destroy: () => {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}
