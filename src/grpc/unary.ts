// Unary calls in gRPC's own protocol (binary, uncompressed, over HTTP/2: what gRPC clients
// send) taken straight from the HTTP/2 request: the message is read whole, decoded, given to
// the same interceptors and method as every other call (Connect's invokeUnaryImplementation),
// and the answer written with its trailers. Everything else (streams, gRPC-Web, Connect's
// protocol, JSON, compressed messages, HTTP/1.1) goes to the Connect adapter.
// Why: Connect's universal handler, built for every protocol at once (Web Headers, linked
// AbortSignals, async iterables for a single message), cost about 0.8 ms of CPU a unary call,
// three times S2's whole REST request; node:http2 itself costs some 30 µs (docs/decisions.md).
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { type DescService, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  type ContextValues,
  createHandlerContext,
  createMethodImplSpec,
  type Interceptor,
  type MethodImplSpec,
} from '@connectrpc/connect';
import { invokeUnaryImplementation } from '@connectrpc/connect/protocol';
import { parseTimeout, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';

type UnarySpec = Extract<MethodImplSpec, { kind: 'unary' }>;

// Returns false when the call is not one it takes.
export type UnaryFastPath = (req: Http2ServerRequest, res: Http2ServerResponse) => boolean;

export type UnaryOptions = Readonly<{
  // each service with its implementation (an object of methods, as router.service takes)
  services: ReadonlyArray<readonly [DescService, object]>;
  interceptors: Interceptor[];
  maxBytes: number;
  contextValues: (req: Http2ServerRequest) => ContextValues;
  // grpc-message as it goes on the wire
  encodeMessage: (message: string) => string;
}>;

const CONTENT_TYPES = new Set(['application/grpc', 'application/grpc+proto']);
// A message's 5-byte prefix: a flags byte (bit 0: compressed), then its length (big-endian).
const PREFIX = 5;
// No deadline is longer than gRPC's own limit (eight digits of hours).
const MAX_TIMEOUT_MS = Number.MAX_SAFE_INTEGER;
// setTimeout's longest delay (about 24.8 days): a longer one fires at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

// A deadline further off than any timer can wait is taken as none (the call ends long before
// it), on either path: its header is dropped before anything reads it, else the call's timer
// would fire at once and end it DEADLINE_EXCEEDED. gRPC and gRPC-Web send grpc-timeout,
// Connect's protocol connect-timeout-ms (up to ten digits).
export function dropDeadlinesPastTimers(headers: Record<string, string | string[] | undefined>): void {
  const grpc = headers['grpc-timeout'];
  if (typeof grpc === 'string' && (parseTimeout(grpc, MAX_TIMEOUT_MS).timeoutMs ?? 0) > MAX_TIMER_MS)
    delete headers['grpc-timeout'];
  const connect = headers['connect-timeout-ms'];
  if (typeof connect === 'string' && /^\d{1,10}$/.test(connect) && Number(connect) > MAX_TIMER_MS)
    delete headers['connect-timeout-ms'];
}

export function unaryFastPath(options: UnaryOptions): UnaryFastPath {
  const routes = new Map<string, UnarySpec>();
  for (const [service, impl] of options.services) {
    for (const method of service.methods) {
      const fn = (impl as Record<string, unknown>)[method.localName];
      if (method.methodKind !== 'unary' || typeof fn !== 'function') continue;
      routes.set(
        `/${service.typeName}/${method.name}`,
        createMethodImplSpec(method, fn.bind(impl) as never) as UnarySpec,
      );
    }
  }
  return (req, res) => {
    const spec = req.method === 'POST' ? routes.get(req.url) : undefined;
    const encoding = req.headers['grpc-encoding'];
    if (!spec || !CONTENT_TYPES.has(req.headers['content-type'] ?? '')) return false;
    if (encoding !== undefined && encoding !== 'identity') return false;
    // Only writing the answer can throw: the stream is gone, so is whom to tell.
    serve(spec, req, res, options).catch(() => req.stream.destroy());
    return true;
  };
}

function headersOf(req: Http2ServerRequest): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(':') || value === undefined) continue;
    if (Array.isArray(value)) for (const one of value) headers.append(name, one);
    else headers.set(name, value);
  }
  return headers;
}

// The request's body, refused past one message of maxBytes.
async function bodyOf(req: Http2ServerRequest, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > PREFIX + maxBytes)
      throw new ConnectError(`message is larger than the limit of ${maxBytes} bytes`, Code.ResourceExhausted);
    chunks.push(chunk as Buffer);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
}

// `work`, or the signal's reason once it is aborted (the call's deadline passing while a slow
// client is still sending its message).
function beforeAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

// The one message a unary call carries.
function messageOf(body: Buffer): Uint8Array {
  if (body.length < PREFIX)
    throw new ConnectError('missing input message for unary method', Code.InvalidArgument);
  const flags = body.readUInt8(0);
  const length = body.readUInt32BE(1);
  // Bit 0 is the only flag a request's message has.
  if (flags > 1)
    throw new ConnectError(`invalid message flags 0x${flags.toString(16)}`, Code.InvalidArgument);
  if (flags & 1) throw new ConnectError('received a compressed message without grpc-encoding', Code.Internal);
  if (body.length < PREFIX + length)
    throw new ConnectError('premature end of the message', Code.InvalidArgument);
  if (body.length > PREFIX + length)
    throw new ConnectError('received extra input message for unary method', Code.InvalidArgument);
  return body.subarray(PREFIX);
}

function decoded(spec: UnarySpec, bytes: Uint8Array) {
  try {
    return fromBinary(spec.method.input, bytes);
  } catch (err) {
    throw new ConnectError(`parse binary: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

function plain(headers: Headers): Record<string, string> {
  return Object.fromEntries(headers);
}

async function serve(
  spec: UnarySpec,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  options: UnaryOptions,
) {
  const deadline = req.headers['grpc-timeout'];
  const timeout = parseTimeout(typeof deadline === 'string' ? deadline : null, MAX_TIMEOUT_MS);
  const context = createHandlerContext({
    service: spec.method.parent,
    method: spec.method,
    protocolName: 'grpc',
    requestMethod: 'POST',
    url: `http://${req.headers[':authority'] ?? 'localhost'}${req.url}`,
    timeoutMs: timeout.timeoutMs,
    requestHeader: headersOf(req),
    responseHeader: { 'content-type': 'application/grpc+proto' },
    responseTrailer: { 'grpc-status': '0' },
    contextValues: options.contextValues(req),
  });
  let answer: Buffer | undefined;
  try {
    if (timeout.error) throw timeout.error;
    const received = await beforeAbort(bodyOf(req, options.maxBytes), context.signal);
    const input = decoded(spec, messageOf(received));
    const output = await invokeUnaryImplementation(spec, context, input, options.interceptors);
    const bytes = toBinary(spec.method.output, output);
    answer = Buffer.allocUnsafe(PREFIX + bytes.length);
    answer.writeUInt8(0, 0);
    answer.writeUInt32BE(bytes.length, 1);
    answer.set(bytes, PREFIX);
  } catch (err) {
    // with the error's metadata, as Connect answers it
    setTrailerStatus(context.responseTrailer, ConnectError.from(err));
    const message = context.responseTrailer.get('grpc-message');
    if (message !== null)
      context.responseTrailer.set('grpc-message', options.encodeMessage(decodeURIComponent(message)));
  } finally {
    // Ends the deadline's timer (a string reason: no DOMException to build).
    if (timeout.timeoutMs !== undefined) context.abort('call ended');
  }
  if (res.destroyed) return;
  res.writeHead(200, plain(context.responseHeader));
  res.addTrailers(plain(context.responseTrailer));
  if (answer) res.end(answer);
  else res.end();
}
