// grpcurl's everyday use against Greenlight, where grpcurl is not installed: call one method
// with a JSON request and print the JSON answer (each message of a stream, one a line), over
// gRPC with the descriptors generated into gen/. TOKEN in the environment goes as the
// `authorization: Bearer` metadata; as grpcurl's, `-H 'name: value'` (before the address, any
// number of times) adds request metadata and `-v` prints the response metadata on stderr.
//   npx node clients/grpc/call.ts localhost:4001 list
//   npx node clients/grpc/call.ts localhost:4001 greenlight.v1.MoviesService/GetMovie '{"id":"1"}'
//   npx node clients/grpc/call.ts -v -H 'idempotency-key: k1' localhost:4001 greenlight.v1.OrdersService/PlaceOrder '{...}'
// Exits 1 with the status on a failed call, as `CODE: message` on stderr.
import { createRegistry, type DescMethod, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { type CallOptions, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { file_greenlight_v1_movies } from '../../gen/greenlight/v1/movies_pb.ts';
import { file_greenlight_v1_orders } from '../../gen/greenlight/v1/orders_pb.ts';
import { file_greenlight_v1_products } from '../../gen/greenlight/v1/products_pb.ts';
import { file_grpc_health_v1_health } from '../../gen/grpc/health/v1/health_pb.js';

const FILES = [
  file_greenlight_v1_movies,
  file_greenlight_v1_products,
  file_greenlight_v1_orders,
  file_grpc_health_v1_health,
];
const registry = createRegistry(...FILES);

type Flags = { headers: [string, string][]; verbose: boolean };

async function call(address: string, path: string, body: string, flags: Flags): Promise<void> {
  const [serviceName = '', methodName = ''] = path.split('/');
  const service = registry.getService(serviceName);
  const method = service?.methods.find((m) => m.name === methodName);
  if (!service || !method) throw new Error(`no method ${path}; try: list`);
  const client = createClient(service, createGrpcTransport({ baseUrl: `http://${address}` }));
  const headers = new Headers(flags.headers);
  if (process.env.TOKEN) headers.set('authorization', `Bearer ${process.env.TOKEN}`);
  const options: CallOptions = {
    headers,
    onHeader: (received) => {
      if (flags.verbose) for (const [name, value] of received) console.error(`< ${name}: ${value}`);
    },
  };
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

// The leading -H and -v flags, then the address, the method and the request.
function parseArguments(args: string[]): { flags: Flags; rest: string[] } {
  const flags: Flags = { headers: [], verbose: false };
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '-v') flags.verbose = true;
    else if (arg === '-H' && i + 1 < args.length) {
      const header = args[++i] as string;
      const colon = header.indexOf(':');
      if (colon < 1) throw new Error(`-H ${header}: not "name: value"`);
      flags.headers.push([header.slice(0, colon).trim(), header.slice(colon + 1).trim()]);
    } else break;
  }
  return { flags, rest: args.slice(i) };
}

const { flags, rest } = parseArguments(process.argv.slice(2));
const [address, what, body = '{}'] = rest;
if (!address || !what) {
  console.error("usage: call.ts [-v] [-H 'name: value']... ADDRESS list | ADDRESS SERVICE/METHOD [JSON]");
  process.exit(2);
}
if (what === 'list') {
  for (const file of FILES) for (const service of file.services) console.log(service.typeName);
} else {
  try {
    await call(address, what, body, flags);
  } catch (err) {
    const error = ConnectError.from(err);
    console.error(`${Code[error.code]}: ${error.rawMessage}`);
    process.exit(1);
  }
}
