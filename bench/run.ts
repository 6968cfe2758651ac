// npm run bench -- [--url URL --token TOKEN] [--duration 10] [--connections 50]
//                  [--scenarios S1,S2,...,C1] [--workers N] [--db-dsn DSN] [--movies 2000] [--warmup 2]
//                  [--callback-clients 50] [--callback-ids 200] [--callback-id-range 200]
//                  [--callback-interval 100] [--bulk-rows 100000] [--cache-ttl 1s] [--tracing]
//                  [--sse-clients 1000] [--sse-rate 20]
//
// Starts the service itself (production settings, rate limiter off, embedded PostgreSQL
// unless --db-dsn) unless given --url, prepares its data through the API, measures a
// minimal node:http baseline, then runs the scenarios S1–S8 (S7, S8: the products API with
// a JWT and with an API key, to compare with S2's book token), L1 and L2 (a list of 100
// movies without and with compression), G1 (one movie by id through POST /graphql), B1 (one
// bulk import of --bulk-rows movies and their export, rows a second; bench/bulk.ts), E1
// (--sse-clients SSE clients receiving --sse-rate movie updates a second, delivery latency;
// bench/events.ts) and the
// callback scenario C1 (bench/callbacks.ts;
// only when it starts the service). R1 is S2 against a second instance on the same database
// with -redis-url (a redis-server the benchmark starts) and -cache-ttl, so its reads are
// mostly X-Cache: HIT; also only when it starts the service. Prints a table, writes JSON to
// bench/out/ and appends a row to bench/results.md (C1: bench/callback-results.md).
// --tracing runs the service with tracing on, exporting every span to a local OTLP receiver
// that discards them (run S2 with and without it to see what tracing costs).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hashSync } from '@node-rs/bcrypt';
import { StandInUpstream } from '../src/callbacks/stand-in.ts';
import { generateMovies } from '../src/movies/seed.ts';
import { freePort } from '../test/ports.ts';
import { spawnRedisServer, type TestRedis } from '../test/redis-server.ts';
import { SmtpSink, tokenIn } from '../test/smtp-sink.ts';
import { type BulkResult, runBulk } from './bulk.ts';
import { type CallbackLoadResult, runCallbackLoad } from './callbacks.ts';
import { type EventFanoutResult, runEventFanout } from './events.ts';
import { hasWrk, type LoadResult, type LoadSpec, runNodeLoad, runWrk } from './load.ts';
import { OtlpSink } from './otlp-sink.ts';

const ROOT = new URL('..', import.meta.url).pathname;
// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 a second.
const CLOCK_TICKS_PER_SECOND = 100;

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    scenarios: { type: 'string', default: 'S1,S2,S3,S4,S5,S6,S7,S8,G1,L1,L2,R1,B1,E1,C1' },
    workers: { type: 'string', default: String(availableParallelism()) },
    'db-dsn': { type: 'string' },
    movies: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '2' },
    'callback-clients': { type: 'string', default: '50' },
    'callback-ids': { type: 'string', default: '200' },
    'callback-id-range': { type: 'string', default: '200' },
    'callback-interval': { type: 'string', default: '100' },
    'bulk-rows': { type: 'string', default: '100000' },
    'cache-ttl': { type: 'string', default: '1s' },
    tracing: { type: 'boolean', default: false },
    'sse-clients': { type: 'string', default: '1000' },
    'sse-rate': { type: 'string', default: '20' },
  },
});

const duration = Number(opts.duration);
const connections = Number(opts.connections);
const wanted = new Set((opts.scenarios as string).split(','));

type Service = {
  url: string;
  callbacksUrl: string;
  pids: () => number[];
  stop: () => Promise<void>;
  grant: (email: string) => void;
};

function waitForLine(
  child: ChildProcess,
  match: (line: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(
      () => reject(new Error(`no start-up line within ${timeoutMs} ms:\n${buffer}`)),
      timeoutMs,
    );
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const line = buffer.split('\n').find(match);
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once('exit', () => reject(new Error(`exited during start-up:\n${buffer}`)));
  });
}

async function waitForFileLine(
  file: string,
  child: ChildProcess,
  text: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!readFileSync(file, 'utf8').includes(text)) {
    if (child.exitCode !== null)
      throw new Error(`service exited during start-up:\n${readFileSync(file, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`service not started within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Database = { dataDir: string; flags: string[] };

async function newDatabase(): Promise<Database> {
  const dataDir = mkdtempSync(join(tmpdir(), 'greenlight-bench-'));
  const flags = opts['db-dsn']
    ? ['-db-dsn', opts['db-dsn']]
    : ['-data-dir', dataDir, '-embedded-db-port', String(await freePort())];
  return { dataDir, flags };
}

// `database` owned: the service is the first on it and removes it when stopped. A second
// service on the same embedded database borrows the running server.
async function startService(
  smtpPort: number,
  upstreamUrl: string,
  database: Database,
  extraFlags: string[] = [],
  owned = true,
): Promise<Service> {
  const port = await freePort();
  const callbacksPort = await freePort();
  const { dataDir, flags: dbFlags } = database;
  const flags = [
    '-env',
    'production',
    '-db-migrate',
    '-host',
    '127.0.0.1',
    '-port',
    String(port),
    '-limiter-enabled=false',
    // E1's SSE clients all come from this one address.
    '-max-connections-per-ip',
    '0',
    '-smtp-host',
    '127.0.0.1',
    '-smtp-port',
    String(smtpPort),
    '-workers',
    String(opts.workers),
    '-jwt-secret',
    randomBytes(32).toString('base64url'),
    '-callbacks-addr',
    `127.0.0.1:${callbacksPort}`,
    '-callbacks-upstream',
    upstreamUrl,
    ...dbFlags,
    ...extraFlags,
  ];
  // The service logs straight into a file: relaying its lines through this process would
  // spend CPU the service shares with us and lower its numbers.
  const logFile = join(dataDir, `server-${port}.log`);
  const logFd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['src/main.ts', 'serve', ...flags], {
    cwd: ROOT,
    stdio: ['ignore', logFd, 'inherit'],
  });
  closeSync(logFd);
  await waitForFileLine(logFile, child, '"msg":"starting server"', 60_000);
  // Every worker logs its own start line; give the others a moment.
  await new Promise((r) => setTimeout(r, 1000));
  return {
    url: `http://127.0.0.1:${port}`,
    callbacksUrl: `http://127.0.0.1:${callbacksPort}`,
    pids: () => {
      const children = existsSync(`/proc/${child.pid}/task/${child.pid}/children`)
        ? readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
            .trim()
            .split(/\s+/)
            .filter(Boolean)
        : [];
      return [child.pid as number, ...children.map(Number)];
    },
    grant: (email) => {
      execFileSync(process.execPath, ['src/main.ts', 'users', 'grant', email, 'movies:write', ...dbFlags], {
        cwd: ROOT,
        stdio: 'ignore',
      });
    },
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      if (owned) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// Peak resident memory (VmHWM) of a process, in MiB; postgres children are not ours.
function peakRssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if ((cmdline.split('\0')[0] ?? '').endsWith('/postgres')) return 0;
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

// CPU time (user + system) the service's own processes have used, in microseconds; postgres
// children are not ours. Per request, it is what a scenario costs the service whatever else
// shares the machine, where req/s also measures the neighbours.
function serviceCpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if ((cmdline.split('\0')[0] ?? '').endsWith('/postgres')) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process has exited
    }
  }
  return (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}

async function api(url: string, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const EMAIL = 'bench@example.com';
const PASSWORD = 'bench-pa55word';

type Prepared = { token: string; ids: number[]; jwt: string; apiKey: string; productIds: number[] };

// A JWT and an API key for the bench user, and products to read (S7, S8).
async function prepareProducts(url: string): Promise<Omit<Prepared, 'token' | 'ids'>> {
  const login = await api(url, 'POST', '/api/v1/auth/login', { email: EMAIL, password: PASSWORD });
  const jwt = login.access_token as string;
  const key = await api(url, 'POST', '/api/v1/api-keys', { name: 'bench', scopes: ['products:read'] }, jwt);
  const productIds: number[] = [];
  for (let i = 0; i < 200; i += 16) {
    const created = await Promise.all(
      Array.from({ length: 16 }, (_, j) =>
        api(url, 'POST', '/api/v1/products', { name: `Product ${i + j}`, price: 9.99, stock: i + j }, jwt),
      ),
    );
    for (const c of created) productIds.push(c.id as number);
  }
  return { jwt, apiKey: key.key as string, productIds };
}

async function prepare(service: Service, sink: SmtpSink): Promise<{ token: string; ids: number[] }> {
  await api(service.url, 'POST', '/v1/users', { name: 'Bench', email: EMAIL, password: PASSWORD });
  const [mail] = await sink.waitFor(EMAIL, 1, 30_000);
  await api(service.url, 'PUT', '/v1/users/activated', { token: tokenIn(mail as NonNullable<typeof mail>) });
  service.grant(EMAIL);
  const login = await api(service.url, 'POST', '/v1/tokens/authentication', {
    email: EMAIL,
    password: PASSWORD,
  });
  const token = (login.authentication_token as { token: string }).token;
  const movies = generateMovies(Number(opts.movies));
  const ids: number[] = [];
  for (let i = 0; i < movies.length; i += 16) {
    const created = await Promise.all(
      movies
        .slice(i, i + 16)
        .map((m) => api(service.url, 'POST', '/v1/movies', { ...m, runtime: `${m.runtime} mins` }, token)),
    );
    for (const c of created) ids.push((c.movie as { id: number }).id);
  }
  return { token, ids };
}

// `cached`: run against the second instance, the one with the Redis cache (R1).
type Scenario = {
  name: string;
  title: string;
  spec: Omit<LoadSpec, 'url' | 'durationSeconds'>;
  cached?: boolean;
};

const LIST_100 = '/v1/movies?page_size=100&sort=-year';

function scenarios({ token, ids, jwt, apiKey, productIds }: Prepared): Scenario[] {
  const some = ids.slice(0, 500);
  const productPaths = productIds.map((id) => `/api/v1/products/${id}`);
  const moviePaths = some.map((id) => `/v1/movies/${id}`);
  // S2's request as GraphQL: the same movies, the same fields.
  const movieQueries = some.map((id) =>
    JSON.stringify({ query: `{ movie(id: ${id}) { id title year runtime genres version } }` }),
  );
  const bodies = generateMovies(200).map((m) => JSON.stringify({ ...m, runtime: `${m.runtime} mins` }));
  const c = connections;
  return [
    {
      name: 'S1',
      title: 'GET /v1/healthcheck',
      spec: { method: 'GET', paths: ['/v1/healthcheck'], bodies: [], token: '', connections: c },
    },
    {
      name: 'S2',
      title: 'GET /v1/movies/:id (bearer)',
      spec: { method: 'GET', paths: moviePaths, bodies: [], token, connections: c },
    },
    {
      name: 'R1',
      title: 'GET /v1/movies/:id (bearer), Redis cache',
      spec: { method: 'GET', paths: moviePaths, bodies: [], token, connections: c },
      cached: true,
    },
    {
      name: 'S3',
      title: 'GET /v1/movies?title&genres&sort=-year',
      spec: {
        method: 'GET',
        paths: ['silent', 'golden', 'river', 'empire'].flatMap((w) =>
          ['drama', 'comedy', 'action'].map(
            (g) => `/v1/movies?title=${w}&genres=${g}&sort=-year&page_size=20`,
          ),
        ),
        bodies: [],
        token,
        connections: c,
      },
    },
    {
      name: 'S4',
      title: 'POST /v1/movies',
      spec: { method: 'POST', paths: ['/v1/movies'], bodies, token, connections: c },
    },
    {
      name: 'S5',
      title: 'PATCH /v1/movies/:id',
      spec: {
        method: 'PATCH',
        paths: moviePaths,
        bodies: Array.from({ length: 50 }, (_, i) => JSON.stringify({ runtime: `${90 + i} mins` })),
        token,
        connections: c,
      },
    },
    {
      name: 'S6',
      title: 'POST /v1/tokens/authentication (8 conns)',
      spec: {
        method: 'POST',
        paths: ['/v1/tokens/authentication'],
        bodies: [JSON.stringify({ email: EMAIL, password: PASSWORD })],
        token: '',
        connections: Math.min(8, c),
      },
    },
    {
      name: 'S7',
      title: 'GET /api/v1/products/:id (JWT)',
      spec: { method: 'GET', paths: productPaths, bodies: [], token: jwt, connections: c },
    },
    {
      name: 'S8',
      title: 'GET /api/v1/products/:id (API key)',
      spec: { method: 'GET', paths: productPaths, bodies: [], token: apiKey, connections: c },
    },
    {
      name: 'L1',
      title: 'GET 100 movies, uncompressed',
      spec: { method: 'GET', paths: [LIST_100], bodies: [], token, connections: c },
    },
    {
      name: 'L2',
      title: 'GET 100 movies, Accept-Encoding: br, gzip',
      spec: {
        method: 'GET',
        paths: [LIST_100],
        bodies: [],
        token,
        connections: c,
        headers: { 'Accept-Encoding': 'br, gzip' },
      },
    },
    {
      name: 'G1',
      title: 'POST /graphql one movie by id (bearer)',
      spec: { method: 'POST', paths: ['/graphql'], bodies: movieQueries, token, connections: c },
    },
  ];
}

// Bytes on the wire of one response to `spec`'s first path, as the load generator gets it.
function responseBytes(url: string, spec: Scenario['spec']): Promise<number> {
  return new Promise((resolve, reject) => {
    const target = new URL(`${url}${spec.paths[0]}`);
    const req = request(
      target,
      { headers: { ...spec.headers, ...(spec.token ? { authorization: `Bearer ${spec.token}` } : {}) } },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        res.on('end', () => resolve(bytes));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

// X-Cache of 100 reads of the scenario's paths, right after its run: how many were hits.
async function xCacheSample(url: string, spec: Scenario['spec']): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const path of spec.paths.slice(0, 100)) {
    const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${spec.token}` } });
    await res.arrayBuffer();
    const value = res.headers.get('x-cache') ?? 'none';
    counts[value] = (counts[value] ?? 0) + 1;
  }
  return counts;
}

// S6's yardstick: what the cores can do at all, one bcrypt cost-12 hash at a time each
// (the median of three, timed here while the machine is idle).
function bcryptLimitRps(): { hashMs: number; limitRps: number } {
  const times = [0, 1, 2].map(() => {
    const started = performance.now();
    hashSync('bench-pa55word', { cost: 12, version: '2a' });
    return performance.now() - started;
  });
  const hashMs = times.sort((a, b) => a - b)[1] as number;
  return {
    hashMs: Number(hashMs.toFixed(1)),
    limitRps: Number((availableParallelism() / (hashMs / 1000)).toFixed(2)),
  };
}

function load(spec: LoadSpec): Promise<LoadResult> {
  return hasWrk() ? runWrk(spec) : runNodeLoad(spec);
}

// The commit measured, marked -dirty when the tree has changes other than the results file
// this benchmark itself appends to.
function commit(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT }).toString().trim();
    const changed = git(
      'status',
      '--porcelain',
      '--',
      '.',
      ':(exclude)bench/results.md',
      ':(exclude)bench/callback-results.md',
    );
    return `${git('rev-parse', '--short', 'HEAD')}${changed ? '-dirty' : ''}`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const generator = hasWrk() ? 'wrk' : 'node:http fallback (install wrk for lower overhead)';
  console.log(`load generator: ${generator}; ${connections} connections, ${duration} s a scenario`);

  const baselineChild = spawn(process.execPath, ['bench/baseline.ts', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const baselinePort = JSON.parse(await waitForLine(baselineChild, (l) => l.startsWith('{'), 10_000)).port;
  const baseline = await load({
    url: `http://127.0.0.1:${baselinePort}`,
    method: 'GET',
    paths: ['/'],
    bodies: [],
    token: '',
    connections,
    durationSeconds: duration,
  });
  baselineChild.kill('SIGTERM');
  console.log(
    `baseline node:http fixed JSON: ${baseline.rps.toFixed(0)} req/s, p99 ${baseline.p99.toFixed(1)} ms`,
  );

  const sink = new SmtpSink();
  // The task's upstream with its real delays, for C1 (in this process: its request count is
  // the lookups a second).
  const upstream = new StandInUpstream();
  const upstreamUrl = await upstream.listen(0);
  let service: Service | undefined;
  let cached: { service: Service; redis: TestRedis } | undefined;
  let token = opts.token ?? '';
  let ids: number[] = [];
  let url = opts.url;
  const otlp = opts.tracing ? new OtlpSink() : undefined;
  if (otlp && url) throw new Error('--tracing needs the service this benchmark starts (no --url)');
  if (!url) {
    await sink.start();
    const database = await newDatabase();
    const otlpUrl = await otlp?.start();
    service = await startService(
      sink.port,
      upstreamUrl,
      database,
      otlpUrl ? ['-otel-endpoint', otlpUrl] : [],
    );
    url = service.url;
    if (wanted.has('R1')) {
      const redis = await spawnRedisServer();
      const flags = ['-redis-url', redis.url, '-cache-ttl', opts['cache-ttl'] as string];
      cached = { service: await startService(sink.port, upstreamUrl, database, flags, false), redis };
      console.log(`R1: a second instance ${cached.service.url} with ${flags.join(' ')}`);
    }
    console.log(
      `service: ${url} (workers ${opts.workers}${otlp ? ', tracing to a local OTLP receiver' : ''}); preparing ${opts.movies} movies through the API…`,
    );
    ({ token, ids } = await prepare(service, sink));
  } else {
    if (!token) throw new Error('--url needs --token (a user with movies:read and movies:write)');
    const list = await api(url, 'GET', '/v1/movies?page_size=100', undefined, token);
    ids = (list.movies as { id: number }[]).map((m) => m.id);
  }

  const products =
    wanted.has('S7') || wanted.has('S8')
      ? await prepareProducts(url)
      : { jwt: '', apiKey: '', productIds: [] };
  const bcrypt = wanted.has('S6') ? bcryptLimitRps() : undefined;
  if (bcrypt) {
    console.log(
      `bcrypt cost 12: ${bcrypt.hashMs} ms a hash, so ${availableParallelism()} cores allow ${bcrypt.limitRps} logins/s`,
    );
  }

  const rows: Record<string, unknown>[] = [];
  for (const scenario of scenarios({ token, ids, ...products }).filter((s) => wanted.has(s.name))) {
    if (scenario.cached && !cached) {
      console.log(`${scenario.name} skipped: it needs the service this benchmark starts`);
      continue;
    }
    const target = scenario.cached && cached ? cached.service.url : url;
    // Unmeasured warm-up: pools open their connections, statements get prepared, caches fill.
    if (Number(opts.warmup) > 0)
      await load({ ...scenario.spec, url: target, durationSeconds: Number(opts.warmup) });
    const servicePids = (scenario.cached && cached ? cached.service : service)?.pids() ?? [];
    const cpuBefore = serviceCpuMicros(servicePids);
    const result = await load({ ...scenario.spec, url: target, durationSeconds: duration });
    const cpuUsed = serviceCpuMicros(servicePids) - cpuBefore;
    const ok = Object.entries(result.statuses)
      .filter(([code]) => Number(code) < 400)
      .reduce((sum, [, n]) => sum + n, 0);
    const conflicts = result.statuses['409'] ?? 0;
    const errors = result.requests - ok - conflicts + result.socketErrors;
    const row = {
      scenario: scenario.name,
      title: scenario.title,
      rps: Math.round(result.rps),
      p50_ms: Number(result.p50.toFixed(2)),
      p99_ms: Number(result.p99.toFixed(2)),
      errors,
      conflicts_409: conflicts,
      ratio_to_baseline: Number((result.rps / baseline.rps).toFixed(4)),
      ...(servicePids.length > 0 && result.requests > 0
        ? { service_cpu_us_per_request: Math.round(cpuUsed / result.requests) }
        : {}),
      ...(scenario.spec.paths[0] === LIST_100
        ? { response_bytes: await responseBytes(url, scenario.spec) }
        : {}),
      ...(scenario.cached ? { x_cache_of_100: await xCacheSample(target, scenario.spec) } : {}),
      ...(scenario.name === 'S6' && bcrypt
        ? {
            rps_exact: Number(result.rps.toFixed(2)),
            ratio_to_bcrypt_limit: Number((result.rps / bcrypt.limitRps).toFixed(3)),
          }
        : {}),
      statuses: result.statuses,
    };
    rows.push(row);
    const versus =
      row.ratio_to_bcrypt_limit === undefined
        ? `×baseline ${row.ratio_to_baseline}`
        : `${row.rps_exact} req/s = ${Math.round(row.ratio_to_bcrypt_limit * 100)} % of the bcrypt limit`;
    const cpu =
      row.service_cpu_us_per_request === undefined
        ? ''
        : `  service CPU ${row.service_cpu_us_per_request} µs/req`;
    const bytes =
      row.response_bytes !== undefined
        ? `  ${row.response_bytes} bytes a response`
        : row.x_cache_of_100
          ? `  X-Cache of 100 reads after it: ${JSON.stringify(row.x_cache_of_100)}`
          : '';
    console.log(
      `${row.scenario} ${row.title.padEnd(42)} ${String(row.rps).padStart(7)} req/s  p50 ${row.p50_ms} ms  p99 ${row.p99_ms} ms  errors ${errors}  409s ${conflicts}  ${versus}${cpu}${bytes}`,
    );
  }

  let bulk: BulkResult | undefined;
  if (wanted.has('B1')) {
    bulk = await runBulk(url, token, Number(opts['bulk-rows']));
    console.log(
      `B1 import of ${bulk.rows} rows (${bulk.upload_bytes} bytes NDJSON): ${bulk.import_rows_per_s} rows/s, failed ${bulk.import_failed}; export of them: ${bulk.export_rows_per_s} rows/s (${bulk.export_bytes} bytes)`,
    );
  }

  let events: EventFanoutResult | undefined;
  if (wanted.has('E1')) {
    events = await runEventFanout(url, token, {
      clients: Number(opts['sse-clients']),
      rate: Number(opts['sse-rate']),
      durationSeconds: duration,
    });
    console.log(
      `E1 ${events.connected} SSE clients × ${events.updates} updates: ${events.delivered} of ${events.expected} delivered, latency from the write p50 ${events.p50_ms} ms  p99 ${events.p99_ms} ms  max ${events.max_ms} ms`,
    );
  }

  let callbacks: CallbackLoadResult | undefined;
  if (!service && wanted.has('C1')) console.log('C1 skipped: it needs the service this benchmark starts');
  if (service && wanted.has('C1')) {
    const spec = {
      clients: Number(opts['callback-clients']),
      ids: Number(opts['callback-ids']),
      idRange: Number(opts['callback-id-range']),
      intervalMs: Number(opts['callback-interval']),
    };
    console.log(
      `C1 POST /callback: ${spec.clients} clients × ${spec.ids} ids (of 1..${spec.idRange}) every ${spec.intervalMs} ms, upstream 300–4,300 ms…`,
    );
    callbacks = await runCallbackLoad({
      ...spec,
      url: service.callbacksUrl,
      upstream,
      durationSeconds: duration,
    });
    console.log(
      `C1 ${callbacks.accepted_per_s} callbacks/s accepted (non-200: ${callbacks.non_200})  p50 ${callbacks.p50_ms} ms  p99 ${callbacks.p99_ms} ms  max ${callbacks.max_ms} ms  ${callbacks.lookups_per_s} lookups/s  backlog ≤ ${callbacks.max_backlog} (oldest ≤ ${callbacks.max_backlog_age_s} s), drained ${callbacks.drained_after_s ?? 'not within 60'} s after the load`,
    );
  }
  await upstream.close();

  const rssByProcess = service
    ? service
        .pids()
        .map((pid) => ({ pid, mib: peakRssMiB(pid) }))
        .filter((p) => p.mib > 0)
    : [];
  const peakRss = service ? Math.max(...rssByProcess.map((p) => p.mib)) : null;
  if (peakRss !== null) {
    console.log(
      `peak RSS of a service process: ${peakRss.toFixed(0)} MiB (${rssByProcess.map((p) => `${p.pid}: ${p.mib.toFixed(0)}`).join(', ')})`,
    );
  }
  await cached?.service.stop();
  await cached?.redis.stop();
  await service?.stop();
  await sink.stop();
  await otlp?.stop();
  if (otlp) console.log(`tracing: ${otlp.requests} OTLP exports received, ${otlp.bytes} bytes`);

  const report = {
    date: new Date().toISOString(),
    commit: commit(),
    machine: `${availableParallelism()} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    generator,
    connections,
    duration_s: duration,
    workers: Number(opts.workers),
    tracing: otlp ? { otlp_exports: otlp.requests, otlp_bytes: otlp.bytes } : null,
    baseline: { rps: Math.round(baseline.rps), p99_ms: Number(baseline.p99.toFixed(2)) },
    bcrypt_cost_12: bcrypt ? { hash_ms: bcrypt.hashMs, limit_rps: bcrypt.limitRps } : null,
    peak_rss_mib: peakRss === null ? null : Math.round(peakRss),
    scenarios: rows,
    bulk: bulk ?? null,
    events: events ?? null,
    callbacks: callbacks ?? null,
  };
  const outDir = join(ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, `bench-${report.date.replace(/[:.]/g, '-')}.json`),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  const cell = (name: string) => {
    const r = rows.find((x) => x.scenario === name);
    if (!r) return '–';
    if (typeof r.ratio_to_bcrypt_limit === 'number')
      return `${r.rps_exact} (${Math.round(r.ratio_to_bcrypt_limit * 100)} % of ${bcrypt?.limitRps}/s, p99 ${r.p99_ms})`;
    return `${r.rps} (${r.ratio_to_baseline}×, p99 ${r.p99_ms})`;
  };
  const resultsFile = join(ROOT, 'bench', 'results.md');
  if (!existsSync(resultsFile)) {
    writeFileSync(
      resultsFile,
      '# Benchmark results\n\nAppended by `npm run bench`: req/s (ratio to the node:http baseline of the same run, p99 ms);\nfor S6, the share of cores / (time of one bcrypt cost-12 hash).\n\n| date | commit | machine | workers | baseline req/s | S1 | S2 | S3 | S4 | S5 | S6 | S7 | S8 | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n',
    );
  }
  if (callbacks) {
    const callbackFile = join(ROOT, 'bench', 'callback-results.md');
    if (!existsSync(callbackFile)) {
      writeFileSync(
        callbackFile,
        '# Callback benchmark results (C1)\n\nAppended by `npm run bench`: clients × ids every interval against the stand-in upstream (300–4,300 ms).\n\n| date | commit | machine | workers | load | accepted/s | non-200 | p50 ms | p99 ms | max ms | lookups/s | max backlog | max backlog age s | drained after s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n',
      );
    }
    const c = callbacks;
    appendFileSync(
      callbackFile,
      `| ${report.date.slice(0, 16)} | ${report.commit} | ${report.machine} | ${report.workers} | ${opts['callback-clients']} × ${opts['callback-ids']} of ${opts['callback-id-range']} / ${opts['callback-interval']} ms, ${duration} s | ${c.accepted_per_s} | ${c.non_200} | ${c.p50_ms} | ${c.p99_ms} | ${c.max_ms} | ${c.lookups_per_s} | ${c.max_backlog} | ${c.max_backlog_age_s} | ${c.drained_after_s ?? '> 60'} |\n`,
    );
  }
  if (rows.length > 0) {
    appendFileSync(
      resultsFile,
      `| ${report.date.slice(0, 16)} | ${report.commit} | ${report.machine} | ${report.workers}${otlp ? ', tracing' : ''} | ${report.baseline.rps} | ${['S1', 'S2', 'S3', 'S4', 'S5', 'S6', 'S7', 'S8'].map(cell).join(' | ')} | ${report.peak_rss_mib ?? '–'} |\n`,
    );
  }
}

// Linux's autogroup scheduling gives every session an equal share of the CPU, and
// PostgreSQL starts each of its processes in a session of its own: with the service, its
// database and the load on two cores, the service's processes (one session) were starved
// for up to two seconds at a time, and a run's p99 with them. The benchmark turns autogroup
// off while it runs, where it may (root), and puts the previous setting back.
const AUTOGROUP = '/proc/sys/kernel/sched_autogroup_enabled';

function withoutAutogroup(): void {
  try {
    const previous = readFileSync(AUTOGROUP, 'utf8').trim();
    if (previous === '0') return;
    writeFileSync(AUTOGROUP, '0');
    process.once('exit', () => writeFileSync(AUTOGROUP, previous));
    console.log('kernel autogroup scheduling off for the run (see bench/run.ts)');
  } catch {
    console.log('kernel autogroup scheduling left as it is (not root?): p99s may show the scheduler');
  }
}

withoutAutogroup();
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
