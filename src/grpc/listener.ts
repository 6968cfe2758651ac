// The gRPC listener: one port for gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1 or HTTP/2).
// Cleartext, the first bytes of a connection decide: HTTP/2's preface goes to the HTTP/2
// server (h2c with prior knowledge, as gRPC clients connect), anything else to an HTTP/1.1
// server (curl, browsers' gRPC-Web); with -grpc-http1=false every connection is HTTP/2's,
// natively, at less CPU a call. With TLS, ALPN decides (h2, else http/1.1).
// Shutdown is graceful: the port closes, HTTP/2 connections get GOAWAY and finish their
// calls, idle HTTP/1.1 connections close; whatever is left when the grace period ends is cut.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import net, { type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Config } from '../config.ts';
import { workerListenOptions } from '../platform/http-server.ts';
import { explainListenError } from '../platform/ports.ts';

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

// The client address of each cleartext HTTP/2 connection, whose session reads through a
// stream (replaying) that has none of its own.
const peers = new WeakMap<Http2Session, string>();

// The address of the client that sent `req`.
export function peerOf(req: IncomingMessage | Http2ServerRequest): string {
  const session = 'stream' in req ? req.stream.session : undefined;
  return (session && peers.get(session)) || req.socket.remoteAddress || '';
}

// The socket as a stream that gives its first chunk again: Node's HTTP/2 session reads a
// net.Socket natively, past anything unshifted back into it, so a connection whose first bytes
// were read to tell the protocol goes to it through this instead (about a tenth slower for a
// trivial call; TLS, where ALPN tells the protocol, has no such cost).
function replaying(socket: Socket, first: Buffer): Duplex {
  // A write is done at once while the socket has room, else once it drains (backpressure).
  const whenRoom = (room: boolean, done: () => void) => {
    if (room) done();
    else socket.once('drain', done);
  };
  const duplex = new Duplex({
    read: () => {
      socket.resume();
    },
    // The session writes a response as several frames: one packet for them all.
    writev: (chunks, done) => {
      socket.cork();
      let room = true;
      for (const { chunk, encoding } of chunks) room = socket.write(chunk, encoding);
      socket.uncork();
      whenRoom(room, done);
    },
    write: (chunk, encoding, done) => {
      if (!socket.writableCorked) {
        socket.cork();
        process.nextTick(() => socket.uncork());
      }
      whenRoom(socket.write(chunk, encoding), done);
    },
    final: (done) => {
      socket.end(done);
    },
    destroy: (err, done) => {
      socket.destroy(err ?? undefined);
      done(err);
    },
  });
  duplex.push(first);
  socket.on('data', (chunk) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  socket.on('close', () => duplex.destroy());
  return duplex;
}

// HTTP/2 when the bytes so far are the start of its preface (a client sends it whole at once).
function isHttp2(first: Buffer): boolean {
  const text = first.subarray(0, PREFACE.length).toString('latin1');
  return PREFACE.startsWith(text);
}

function servers(handler: Handler, config: Config) {
  const { tls } = config.grpc;
  const options = { maxSessionMemory: 32 };
  if (tls) {
    const secure = http2.createSecureServer(
      { ...options, cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), allowHTTP1: true },
      handler,
    );
    return { outer: secure as net.Server, h2: secure, h1: undefined };
  }
  const h2 = http2.createServer(options, handler);
  if (!config.grpc.http1) return { outer: h2 as net.Server, h2, h1: undefined };
  const h1 = http.createServer({ keepAliveTimeout: config.http.idleTimeoutMs }, handler);
  let connecting = '';
  h2.on('session', (session: Http2Session) => peers.set(session, connecting));
  const outer = net.createServer((socket) => {
    // Without it, small HTTP/2 frames written through `replaying` wait for the peer's ACK.
    socket.setNoDelay(true);
    socket.once('data', (first) => {
      socket.pause();
      if (isHttp2(first)) {
        // The session is made, and its 'session' event emitted, within this call.
        connecting = socket.remoteAddress ?? '';
        h2.emit('connection', replaying(socket, first));
        connecting = '';
        return;
      }
      socket.unshift(first);
      h1.emit('connection', socket);
      socket.resume();
    });
  });
  return { outer, h2, h1 };
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
  });
  outer.on('connection', (socket: Socket) => {
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
