// Load generators. wrk (Debian's package) when it is installed: C, low overhead, the same
// tool the Go reference numbers came from. Otherwise a keep-alive node:http loop, which
// costs the machine more CPU and so understates the service.
import { execFile, spawnSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { percentile } from './callbacks.ts';

export type LoadSpec = Readonly<{
  url: string; // base URL, no trailing slash
  method: string;
  paths: readonly string[];
  // when given, path i is requested with methods[i] instead of `method` (a mix such as P1's)
  methods?: readonly string[];
  bodies: readonly string[];
  token: string;
  connections: number;
  durationSeconds: number;
  // extra request headers, e.g. Accept-Encoding
  headers?: Readonly<Record<string, string>>;
  // a header sent with a value of its own on every request (W1's Idempotency-Key)
  uniqueHeader?: string;
  // each connection waits about this long (±50 %, at random) before each request: clients
  // that act at a human pace instead of as fast as the service answers (W1)
  thinkMs?: number;
}>;

export type LoadResult = Readonly<{
  requests: number;
  rps: number;
  p50: number; // ms
  p99: number; // ms
  statuses: Record<string, number>;
  socketErrors: number;
}>;

const LUA = fileURLToPath(new URL('./scripts/request.lua', import.meta.url));

export function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

export function runWrk(spec: LoadSpec): Promise<LoadResult> {
  const threads = Math.min(2, spec.connections);
  const args = [
    `-t${threads}`,
    `-c${spec.connections}`,
    `-d${spec.durationSeconds}s`,
    '--timeout',
    '10s',
    '-s',
    LUA,
    spec.url,
  ];
  const env = {
    ...process.env,
    BENCH_METHOD: spec.method,
    BENCH_TOKEN: spec.token,
    BENCH_PATHS: spec.paths.join(' '),
    BENCH_METHODS: (spec.methods ?? []).join(' '),
    BENCH_BODIES: spec.bodies.join('|'),
    BENCH_HEADERS: Object.entries(spec.headers ?? {})
      .map(([name, value]) => `${name}: ${value}`)
      .join('\n'),
    BENCH_UNIQUE_HEADER: spec.uniqueHeader ?? '',
    BENCH_THINK_MS: String(spec.thinkMs ?? 0),
  };
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { env, timeout: (spec.durationSeconds + 30) * 1000 }, (err, stdout) => {
      if (err) return reject(err);
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
      const total = /(\d+) requests in/.exec(stdout);
      if (!line || !rps || !total) return reject(new Error(`unexpected wrk output:\n${stdout}`));
      const parsed = JSON.parse(line.slice('BENCH_RESULT '.length)) as {
        p50: number;
        p99: number;
        statuses: Record<string, number>;
      };
      const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
      resolve({
        requests: Number(total[1]),
        rps: Number(rps[1]),
        p50: parsed.p50,
        p99: parsed.p99,
        statuses: parsed.statuses,
        socketErrors: errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
      });
    });
  });
}

export async function runNodeLoad(spec: LoadSpec): Promise<LoadResult> {
  const run = `${process.pid}-${Date.now()}`;
  let sent = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
  const target = new URL(spec.url);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let socketErrors = 0;
  const deadline = performance.now() + spec.durationSeconds * 1000;
  const one = () =>
    new Promise<void>((resolve) => {
      const body =
        spec.bodies.length > 0 ? spec.bodies[Math.floor(Math.random() * spec.bodies.length)] : undefined;
      const pick = Math.floor(Math.random() * spec.paths.length);
      const started = performance.now();
      const req = request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          method: spec.methods?.[pick] ?? spec.method,
          path: spec.paths[pick],
          headers: {
            ...spec.headers,
            ...(spec.token ? { authorization: `Bearer ${spec.token}` } : {}),
            ...(body ? { 'content-type': 'application/json' } : {}),
            ...(spec.uniqueHeader ? { [spec.uniqueHeader]: `${run}-${++sent}` } : {}),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - started);
            statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1;
            resolve();
          });
        },
      );
      req.on('error', () => {
        socketErrors++;
        resolve();
      });
      req.end(body);
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: spec.connections }, async () => {
      while (performance.now() < deadline) {
        if (spec.thinkMs) await sleep(spec.thinkMs * (0.5 + Math.random()));
        await one();
      }
    }),
  );
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    rps: latencies.length / ((performance.now() - started) / 1000),
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    statuses,
    socketErrors,
  };
}
