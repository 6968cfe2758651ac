// Q1's load generator: unary greenlight.v1.MoviesService/GetMovie over gRPC (HTTP/2 with
// prior knowledge), `streams` calls in flight at once, spread over one HTTP/2 connection for
// every ten of them (so that -workers N, each bound with SO_REUSEPORT, all get some). The
// request is encoded by hand (field 1, varint): no protobuf runtime in the loop. A call counts
// as status 200 when its grpc-status is 0, else as 500 + the status.
// h2load (Debian's nghttp2-client) when it is installed: C, as wrk is for S2, so that the
// client does not take the CPU the service is measured on; otherwise a node:http2 loop.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile } from './callbacks.ts';
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

export function hasH2load(): boolean {
  return spawnSync('h2load', ['--version']).error === undefined;
}

export function runGrpcLoad(spec: GrpcLoadSpec): Promise<LoadResult> {
  return hasH2load() ? runH2load(spec) : runNodeGrpcLoad(spec);
}

function headersOf(token: string) {
  return {
    ':method': 'POST',
    ':path': PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${token}`,
  };
}

// One call: its grpc-status and the bytes of its response body (a trailers-only error has none).
function probe(spec: GrpcLoadSpec, body: Buffer): Promise<{ status: string; bytes: number }> {
  const session = http2.connect(spec.url);
  return new Promise((resolve, reject) => {
    session.on('error', reject);
    const req = session.request(headersOf(spec.token));
    let status = '';
    let bytes = 0;
    req.on('response', (h) => {
      status = String(h['grpc-status'] ?? '');
    });
    req.on('trailers', (t) => {
      status = String(t['grpc-status'] ?? status);
    });
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      session.close();
      resolve({ status, bytes });
    });
    req.end(body);
  });
}

// h2load sends one body, so every call asks for the same movie (a row PostgreSQL has cached,
// as S2's 500 are). It checks only the HTTP status, which a gRPC error shares with a success:
// a probe call first gives the size of a good answer, and the calls that returned less body
// than that in all are counted as errors.
async function runH2load(spec: GrpcLoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'greenlight-q1-'));
  try {
    const body = frame(spec.ids[0] ?? 1);
    const good = await probe(spec, body);
    if (good.status !== '0') throw new Error(`Q1's probe call failed with grpc-status ${good.status}`);
    writeFileSync(join(dir, 'request'), body);
    const connections = Math.ceil(spec.streams / STREAMS_PER_CONNECTION);
    const headers = Object.entries(headersOf(spec.token))
      .filter(([name]) => !name.startsWith(':'))
      .flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
    const args = [
      ...['-D', String(spec.durationSeconds), '-c', String(connections), '-t', '2'],
      ...['-m', String(STREAMS_PER_CONNECTION), '-d', join(dir, 'request'), '--log-file', join(dir, 'log')],
      ...headers,
      `${spec.url}${PATH}`,
    ];
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('h2load', args, { timeout: (spec.durationSeconds + 30) * 1000 }, (err, out) =>
        err ? reject(err) : resolve(out),
      ),
    );
    const data = /traffic: .*\((\d+)\) data/.exec(stdout);
    if (!data) throw new Error(`unexpected h2load output:\n${stdout}`);
    // a row per call: start (µs since the epoch), HTTP status (-1: failed), duration (µs)
    const rows = readFileSync(join(dir, 'log'), 'utf8')
      .trim()
      .split('\n')
      .map((row) => row.split('\t').map(Number) as [number, number, number]);
    let started = Number.POSITIVE_INFINITY;
    let ended = 0;
    const latencies: number[] = [];
    for (const [start, status, micros] of rows) {
      started = Math.min(started, start);
      ended = Math.max(ended, start + micros);
      if (status === 200) latencies.push(micros / 1000);
    }
    latencies.sort((a, b) => a - b);
    const answered = Math.min(latencies.length, Math.round(Number(data[1]) / good.bytes));
    return {
      requests: rows.length,
      rps: latencies.length / ((ended - started) / 1e6),
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      // an error's grpc-status is not known here: counted as UNKNOWN's (2)
      statuses: { '200': answered, '502': rows.length - answered },
      socketErrors: rows.filter(([, status]) => status === -1).length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runNodeGrpcLoad(spec: GrpcLoadSpec): Promise<LoadResult> {
  const sessions = Array.from({ length: Math.ceil(spec.streams / STREAMS_PER_CONNECTION) }, () =>
    http2.connect(spec.url),
  );
  for (const session of sessions) session.on('error', () => {});
  const frames = spec.ids.map(frame);
  const headers = headersOf(spec.token);
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
  return {
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    statuses,
    socketErrors,
  };
}
