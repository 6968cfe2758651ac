// Q1's load generator: unary greenlight.v1.MoviesService/GetMovie over gRPC (HTTP/2 with
// prior knowledge, node:http2), `streams` calls in flight at once, spread over one HTTP/2
// connection for every ten of them (so that -workers N, each bound with SO_REUSEPORT, all get
// some). The request is encoded by hand (field 1, varint): no protobuf runtime in the loop.
// A call counts as status 200 when its grpc-status is 0, else as 500 + the status.
import http2 from 'node:http2';
import type { LoadResult } from './load.ts';

export type GrpcLoadSpec = Readonly<{
  url: string;
  token: string;
  ids: readonly number[];
  streams: number;
  durationSeconds: number;
}>;

const PATH = '/greenlight.v1.MoviesService/GetMovie';
const STREAMS_PER_CONNECTION = 10;

function varint(n: number): number[] {
  const bytes: number[] = [];
  let rest = n;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return bytes;
}

// The length-prefixed message of GetMovieRequest{id}.
function frame(id: number): Buffer {
  const message = [0x08, ...varint(id)];
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, Buffer.from(message)]);
}

export async function runGrpcLoad(spec: GrpcLoadSpec): Promise<LoadResult> {
  const sessions = Array.from({ length: Math.ceil(spec.streams / STREAMS_PER_CONNECTION) }, () =>
    http2.connect(spec.url),
  );
  for (const session of sessions) session.on('error', () => {});
  const frames = spec.ids.map(frame);
  const headers = {
    ':method': 'POST',
    ':path': PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${spec.token}`,
  };
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let socketErrors = 0;
  const deadline = performance.now() + spec.durationSeconds * 1000;
  const one = (session: http2.ClientHttp2Session) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = session.request(headers);
      let status = '';
      req.on('response', (h) => {
        status = String(h['grpc-status'] ?? '');
      });
      req.on('trailers', (t) => {
        status = String(t['grpc-status'] ?? status);
      });
      req.on('error', () => {
        socketErrors++;
        resolve();
      });
      req.on('end', () => {
        latencies.push(performance.now() - started);
        const code = status === '0' ? '200' : String(500 + Number(status || 2));
        statuses[code] = (statuses[code] ?? 0) + 1;
        resolve();
      });
      req.resume();
      req.end(frames[Math.floor(Math.random() * frames.length)]);
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: spec.streams }, async (_, i) => {
      const session = sessions[i % sessions.length] as http2.ClientHttp2Session;
      while (performance.now() < deadline) await one(session);
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  for (const session of sessions) session.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    statuses,
    socketErrors,
  };
}
