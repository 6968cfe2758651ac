// grpcurl's everyday use against Greenlight, where grpcurl is not installed: call one method
// with a JSON request and print the JSON answer (each message of a stream, one a line), over
// gRPC with the descriptors generated into gen/. TOKEN in the environment goes as the
// `authorization: Bearer` metadata.
//   npx node clients/grpc/call.ts localhost:4001 list
//   npx node clients/grpc/call.ts localhost:4001 greenlight.v1.MoviesService/GetMovie '{"id":"1"}'
// Exits 1 with the status on a failed call, as `CODE: message` on stderr.
import { createRegistry, type DescMethod, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { type CallOptions, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { file_greenlight_v1_movies } from '../../gen/greenlight/v1/movies_pb.ts';
import { file_greenlight_v1_products } from '../../gen/greenlight/v1/products_pb.ts';
import { file_grpc_health_v1_health } from '../../gen/grpc/health/v1/health_pb.js';

const FILES = [file_greenlight_v1_movies, file_greenlight_v1_products, file_grpc_health_v1_health];
const registry = createRegistry(...FILES);

async function call(address: string, path: string, body: string): Promise<void> {
  const [serviceName = '', methodName = ''] = path.split('/');
  const service = registry.getService(serviceName);
  const method = service?.methods.find((m) => m.name === methodName);
  if (!service || !method) throw new Error(`no method ${path}; try: list`);
  const client = createClient(service, createGrpcTransport({ baseUrl: `http://${address}` }));
  const options: CallOptions = process.env.TOKEN
    ? { headers: { authorization: `Bearer ${process.env.TOKEN}` } }
    : {};
  const input = fromJson(method.input, JSON.parse(body) as JsonValue);
  const invoke = (client as unknown as Record<string, (i: unknown, o: CallOptions) => unknown>)[
    method.localName
  ] as (i: unknown, o: CallOptions) => unknown;
  const print = (m: DescMethod, message: unknown) =>
    console.log(JSON.stringify(toJson(m.output, message as never)));
  if (method.methodKind === 'server_streaming') {
    for await (const message of invoke(input, options) as AsyncIterable<unknown>) print(method, message);
  } else {
    print(method, await invoke(input, options));
  }
}

const [address, what, body = '{}'] = process.argv.slice(2);
if (!address || !what) {
  console.error('usage: call.ts ADDRESS list | ADDRESS SERVICE/METHOD [JSON]');
  process.exit(2);
}
if (what === 'list') {
  for (const file of FILES) for (const service of file.services) console.log(service.typeName);
} else {
  try {
    await call(address, what, body);
  } catch (err) {
    const error = ConnectError.from(err);
    console.error(`${Code[error.code]}: ${error.rawMessage}`);
    process.exit(1);
  }
}
