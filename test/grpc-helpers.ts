// What the gRPC tests share: the app's gRPC listener started in-process, the independent
// client (@grpc/grpc-js with the .proto files loaded at run time) and the generated Connect
// clients over each of the three protocols.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { DescService } from '@bufbuild/protobuf';
import { type Client, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../src/config.ts';
import { listenGrpc } from '../src/grpc/listener.ts';
import { ROOT } from './processes.ts';

export const GRPC_FLAGS = ['-grpc-addr', '127.0.0.1:0'];

// The app's gRPC listener on a free port, drained and closed after the file's tests.
export async function startGrpc(app: FastifyInstance, config: Config): Promise<string> {
  const listener = await listenGrpc(app.grpc.handle, config);
  after(async () => {
    listener.drain();
    listener.destroy();
    await listener.closed;
  });
  return `127.0.0.1:${listener.port}`;
}

type Definition = ReturnType<typeof grpc.loadPackageDefinition>;

// The contract as a client that knows nothing of ours reads it.
export function loadProtos(): Definition {
  const definition = protoLoader.loadSync(
    [
      'greenlight/v1/movies.proto',
      'greenlight/v1/products.proto',
      'greenlight/v1/orders.proto',
      'grpc/health/v1/health.proto',
      'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto',
    ],
    { includeDirs: [`${ROOT}/proto`], longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition);
}

// biome-ignore lint/suspicious/noExplicitAny: the answers are what proto-loader makes of the messages
type Unary = (request: object, options?: grpc.CallOptions) => Promise<any>;
type UnaryName =
  | `${'Get' | 'List' | 'Create' | 'Update' | 'Delete'}${'Movie' | 'Movies' | 'Product' | 'Products'}`
  | `${'Place' | 'Get' | 'Cancel'}Order`
  | 'ListOrders'
  | 'ListOrderEvents'
  | 'Check';

// A grpc-js client of `service` ("greenlight.v1.MoviesService") whose unary methods return
// promises; `raw` is the client itself, for streams; `withMetadata` calls a unary method with
// more request metadata and answers the response's metadata too.
export function grpcJsClient(address: string, service: string, token?: string) {
  const Service = service
    .split('.')
    .reduce(
      (node: unknown, part) => (node as Record<string, unknown>)[part],
      loadProtos(),
    ) as grpc.ServiceClientConstructor;
  const raw = new Service(address, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (...args: unknown[]) => grpc.ClientReadableStream<unknown>>;
  after(() => raw.close());
  const metadata = () => {
    const m = new grpc.Metadata();
    if (token !== undefined) m.set('authorization', `Bearer ${token}`);
    return m;
  };
  const unary = (name: string, request: object, options: grpc.CallOptions, extra: Record<string, string>) =>
    new Promise<{ answer: Awaited<ReturnType<Unary>>; metadata: grpc.Metadata }>((resolve, reject) => {
      const sent = metadata();
      for (const [key, value] of Object.entries(extra)) sent.set(key, value);
      let received = new grpc.Metadata();
      const method = raw[name] as (...args: unknown[]) => grpc.ClientUnaryCall;
      const call = method.call(raw, request, sent, options, (err: Error | null, answer: unknown) =>
        err ? reject(err) : resolve({ answer, metadata: received }),
      );
      call.on('metadata', (headers: grpc.Metadata) => {
        received = headers;
      });
    });
  const call = new Proxy({} as Record<UnaryName, Unary>, {
    get:
      (_, name: string) =>
      async (request: object, options: grpc.CallOptions = {}) =>
        (await unary(name, request, options, {})).answer,
  });
  const withMetadata = (name: UnaryName, request: object, extra: Record<string, string>) =>
    unary(name, request, {}, extra);
  return { call, raw, metadata, withMetadata };
}

// Rejects with the grpc-js error; its code and details (the message).
export async function grpcJsError(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

// Rejects with the Connect client's error (its code, rawMessage and details).
export async function connectFailure(promise: Promise<unknown>): Promise<ConnectError> {
  return promise.then(
    () => assert.fail('the call succeeded'),
    (err: unknown) => ConnectError.from(err),
  );
}

export const PROTOCOLS = ['grpc', 'grpc-web', 'connect'] as const;

// The generated client over one of the three protocols, with a bearer token when given.
export function connectClient<S extends DescService>(
  service: S,
  address: string,
  protocol: (typeof PROTOCOLS)[number],
  token?: string,
): Client<S> {
  const baseUrl = `http://${address}`;
  const withToken: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const interceptors = token ? [withToken] : [];
  const transport =
    protocol === 'grpc'
      ? createGrpcTransport({ baseUrl, interceptors })
      : protocol === 'grpc-web'
        ? createGrpcWebTransport({ baseUrl, httpVersion: '1.1', interceptors })
        : createConnectTransport({ baseUrl, httpVersion: '1.1', interceptors });
  return createClient(service, transport);
}

export { grpc };
