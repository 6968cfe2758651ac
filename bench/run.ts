// npm run bench -- [--scenarios S4,S5,P1] [--duration 10] [--connections 50] [--workers N]
//                  [--url URL --token TOKEN] [--db-dsn DSN] [--movies 2000] [--warmup 2]
//                  [--callback-clients 50] [--callback-ids 200] [--callback-id-range 200]
//                  [--callback-interval 100] [--bulk-rows 100000] [--cache-ttl 1s] [--tracing]
//                  [--sse-clients 1000] [--sse-rate 20] [--order-think 500] [--note TEXT]
//                  [--no-record]
//
// Starts the service itself (production settings, rate limiter off, embedded PostgreSQL
// unless --db-dsn) unless given --url, prepares its data through the API, measures a
// minimal node:http baseline, then runs every scenario unless --scenarios names some:
// S1–S8 (S7, S8: the products API with a JWT and with an API key, to compare with S2's book
// token), Q1 (S2's read as unary GetMovie over gRPC, as many streams as S2 has connections;
// bench/grpc-load.ts; only when it starts the service), P1 (products written with a JWT: POST
// and PATCH, half each), W1 (orders placed with a JWT, a new Idempotency-Key each, each client
// about every --order-think ms, against a payments stand-in in this process that always accepts;
// then the seconds until every order is terminal), L1 and L2 (a list of
// 100 movies without and with compression), G1 (one movie by id through POST /graphql), B1
// (one bulk import of --bulk-rows movies and their export, rows a second; bench/bulk.ts), E1
// (--sse-clients SSE clients receiving --sse-rate movie updates a second, delivery latency;
// bench/events.ts), A1 (movie.created on RabbitMQ under S4's load: a rabbitmq-server and a
// second instance with -amqp-url, started for it; bench/broker.ts) and the callback scenario
// C1 (bench/callbacks.ts; only when it starts the service). R1 is S2 against a second
// instance on the same database with -redis-url (a redis-server the benchmark starts) and
// -cache-ttl, so its reads are mostly X-Cache: HIT; the instance runs for R1 alone, and only
// when the benchmark starts the service.
// Each figure is printed with its change against the last full row of bench/results.md
// measured with the same settings, flagged when it is more than 15 % worse. A run of every
// scenario appends a full row there; a run of a subset (or one that had to skip a scenario)
// says it is partial and appends to bench/partial-results.md instead (bench/results.ts).
// --no-record appends nothing (smoke runs). The run's JSON goes to bench/out/, C1's details
// also to bench/callback-results.md. The summary gives the RSS of the primary and of each
// worker, at their peak and at the end.
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
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { hashSync } from '@node-rs/bcrypt';
import { StandInUpstream } from '../src/callbacks/stand-in.ts';
import { generateMovies } from '../src/movies/seed.ts';
import { startPaymentsStandIn } from '../src/payments/stand-in.ts';
import { freePort } from '../test/ports.ts';
import { hasRabbitmqServer, spawnRabbitmqServer } from '../test/rabbitmq-server.ts';
import { spawnRedisServer } from '../test/redis-server.ts';
import { SmtpSink, tokenIn } from '../test/smtp-sink.ts';
import { type PublishLatencyResult, runPublishLatency } from './broker.ts';
import { type BulkResult, runBulk } from './bulk.ts';
import { type CallbackLoadResult, runCallbackLoad } from './callbacks.ts';
import { type EventFanoutResult, runEventFanout } from './events.ts';
import { runGrpcLoad } from './grpc-load.ts';
import { hasWrk, type LoadResult, type LoadSpec, runNodeLoad, runWrk } from './load.ts';
import { OtlpSink } from './otlp-sink.ts';
import { type ProcessMemory, serviceCpuMicros, serviceMemory } from './processes.ts';
import {
  appendRow,
  describe,
  type Figures,
  FLAG_PERCENT,
  lastFullRow,
  type Row,
  RSS_COLUMN,
  SCENARIOS,
} from './results.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const RESULTS_FILE = join(ROOT, 'bench', 'results.md');
const PARTIAL_RESULTS_FILE = join(ROOT, 'bench', 'partial-results.md');

// The options that shape what a scenario measures: one not at its default goes into the
// row's settings, so that only runs measured alike are compared.
const SCENARIO_OPTIONS = {
  movies: { type: 'string', default: '2000' },
  warmup: { type: 'string', default: '2' },
  'callback-clients': { type: 'string', default: '50' },
  'callback-ids': { type: 'string', default: '200' },
  'callback-id-range': { type: 'string', default: '200' },
  'callback-interval': { type: 'string', default: '100' },
  'bulk-rows': { type: 'string', default: '100000' },
  'cache-ttl': { type: 'string', default: '1s' },
  'sse-clients': { type: 'string', default: '1000' },
  'sse-rate': { type: 'string', default: '20' },
  'order-think': { type: 'string', default: '500' },
} as const;

const { values: opts } = parseArgs({
  allowNegative: true,
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    scenarios: { type: 'string', default: SCENARIOS.join(',') },
    workers: { type: 'string', default: String(availableParallelism()) },
    'db-dsn': { type: 'string' },
    tracing: { type: 'boolean', default: false },
    note: { type: 'string' },
    record: { type: 'boolean', default: true },
    ...SCENARIO_OPTIONS,
  },
});

const duration = Number(opts.duration);
const connections = Number(opts.connections);
const wanted = new Set(
  (opts.scenarios as string)
    .split(',')
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean),
);
const unknown = [...wanted].filter((s) => !(SCENARIOS as readonly string[]).includes(s));
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(', ')}; the scenarios are ${SCENARIOS.join(', ')}`);
  process.exit(2);
}

// What makes two runs comparable, as the row's settings cell says it.
function settings(): string {
  const parts = [`${opts.workers} workers`, `${connections} conns`];
  if (opts.tracing) {
    const ratio = process.env.GREENLIGHT_OTEL_SAMPLE_RATIO;
    parts.push(ratio ? `tracing, sample ratio ${ratio}` : 'tracing');
  }
  if (opts['db-dsn']) parts.push('external database');
  if (opts.url) parts.push('a running service');
  for (const [name, option] of Object.entries(SCENARIO_OPTIONS)) {
    const value = opts[name as keyof typeof SCENARIO_OPTIONS];
    if (value !== option.default) parts.push(`--${name} ${value}`);
  }
  return parts.join(', ');
}

type Service = {
  url: string;
  grpcUrl: string;
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

// What the benchmark has started and must stop, the last started first, should it fail:
// a service left behind would hold its embedded database and load the machine.
const running = new Set<() => Promise<void>>();

type Database = { dataDir: string; flags: string[] };

async function newDatabase(): Promise<Database> {
  const dataDir = mkdtempSync(join(tmpdir(), 'greenlight-bench-'));
  const flags = opts['db-dsn']
    ? ['-db-dsn', opts['db-dsn']]
    : ['-data-dir', dataDir, '-embedded-db-port', String(await freePort())];
  return { dataDir, flags };
}

// What every instance of the service talks to: the SMTP sink, C1's upstream and W1's payment
// provider, all in this process. A second instance on the database also runs order steps, so
// it needs the same provider as the first.
type StandIns = Readonly<{ smtpPort: number; upstreamUrl: string; paymentsUrl: string }>;

// `database` owned: the service is the first on it and removes it when stopped. A second
// service on the same embedded database borrows the running server.
async function startService(
  { smtpPort, upstreamUrl, paymentsUrl }: StandIns,
  database: Database,
  extraFlags: string[] = [],
  owned = true,
): Promise<Service> {
  const port = await freePort();
  const callbacksPort = await freePort();
  const grpcPort = await freePort();
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
    '-payments-url',
    paymentsUrl,
    '-grpc-addr',
    `127.0.0.1:${grpcPort}`,
    ...dbFlags,
    ...extraFlags,
  ];
  // The service logs straight into a file: relaying its lines through this process would
  // spend CPU the service shares with us and lower its numbers.
  const logFile = join(dataDir, `server-${port}.log`);
  const logFd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['bin/greenlight.js', 'serve', ...flags], {
    cwd: ROOT,
    stdio: ['ignore', logFd, 'inherit'],
  });
  closeSync(logFd);
  const stop = async () => {
    running.delete(stop);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    if (owned) rmSync(dataDir, { recursive: true, force: true });
  };
  running.add(stop);
  try {
    // Generous: on a busy machine the embedded database alone can take a minute.
    await waitForFileLine(logFile, child, '"msg":"starting server"', 180_000);
  } catch (err) {
    await stop();
    throw err;
  }
  // Every worker logs its own start line; give the others a moment.
  await new Promise((r) => setTimeout(r, 1000));
  return {
    url: `http://127.0.0.1:${port}`,
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
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
      execFileSync(
        process.execPath,
        ['bin/greenlight.js', 'users', 'grant', email, 'movies:write', ...dbFlags],
        {
          cwd: ROOT,
          stdio: 'ignore',
        },
      );
    },
    stop,
  };
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

type Prepared = {
  token: string;
  ids: number[];
  jwt: string;
  apiKey: string;
  productIds: number[];
  // W1's products, each with stock for any number of orders
  orderProductIds: number[];
};

// W1's orders are spread over this many products, each order one of them at random: a shop's
// sales, not every buyer after one item (whose row lock would then order every reservation).
const ORDER_PRODUCTS = 100;

// A JWT and an API key for the bench user, and products to read (S7, S8) and change (P1).
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
  const forOrders = await Promise.all(
    Array.from({ length: ORDER_PRODUCTS }, (_, i) =>
      api(
        url,
        'POST',
        '/api/v1/products',
        { name: `For orders ${i}`, price: 9.99, stock: 1_000_000_000 },
        jwt,
      ),
    ),
  );
  return {
    jwt,
    apiKey: key.key as string,
    productIds,
    orderProductIds: forOrders.map((product) => product.id as number),
  };
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

// `cached`: run against the second instance, the one with the Redis cache (R1). `run`: a load
// of its own instead of HTTP's (Q1, gRPC), for that many seconds; undefined without the
// service this benchmark starts.
type Scenario = {
  name: string;
  title: string;
  spec: Omit<LoadSpec, 'url' | 'durationSeconds'>;
  cached?: boolean;
  run?: ((durationSeconds: number) => Promise<LoadResult>) | null;
  // after the load: how many seconds until the work it started has ended (W1's orders)
  settle?: () => Promise<number>;
};

const LIST_100 = '/v1/movies?page_size=100&sort=-year';

// W1's clients each place an order about every --order-think milliseconds, as people buying
// do, rather than as fast as the service answers: at a steady state, where the workflow
// completes orders as fast as they are placed, the POST's latency is its own and not a
// backlog's (`--order-think 0`: as fast as it answers).
const OPEN_STATUSES = ['pending', 'reserved', 'paid'];
const SETTLE_LIMIT_S = 120;

// Seconds until none of the bench user's orders is in flight any more (SETTLE_LIMIT_S when
// some still are then).
async function ordersSettled(url: string, jwt: string): Promise<number> {
  const started = performance.now();
  const openNow = () =>
    Promise.all(
      OPEN_STATUSES.map(async (status) => {
        const page = await api(url, 'GET', `/api/v1/orders?status=${status}&limit=1`, undefined, jwt);
        return `${page.total} ${status}`;
      }),
    );
  let open = await openNow();
  while (
    open.some((count) => !count.startsWith('0 ')) &&
    (performance.now() - started) / 1000 < SETTLE_LIMIT_S
  ) {
    await sleep(100);
    open = await openNow();
  }
  if (open.some((count) => !count.startsWith('0 ')))
    console.log(`W1: orders still in flight ${SETTLE_LIMIT_S} s after the load: ${open.join(', ')}`);
  return Number(((performance.now() - started) / 1000).toFixed(1));
}

function scenarios({
  token,
  ids,
  jwt,
  apiKey,
  productIds,
  orderProductIds,
  grpcUrl,
  url,
}: Prepared & { grpcUrl?: string; url: string }): Scenario[] {
  const some = ids.slice(0, 500);
  const productPaths = productIds.map((id) => `/api/v1/products/${id}`);
  const moviePaths = some.map((id) => `/v1/movies/${id}`);
  // S2's request as GraphQL: the same movies, the same fields.
  const movieQueries = some.map((id) =>
    JSON.stringify({ query: `{ movie(id: ${id}) { id title year runtime genres version } }` }),
  );
  const bodies = generateMovies(200).map((m) => JSON.stringify({ ...m, runtime: `${m.runtime} mins` }));
  // Valid both to create a product and, every field sent, to change one.
  const productBodies = Array.from({ length: 200 }, (_, i) =>
    JSON.stringify({ name: `Bench product ${i}`, price: Number((1 + i * 0.37).toFixed(2)), stock: i }),
  );
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
      name: 'Q1',
      title: `gRPC GetMovie (bearer), ${c} streams`,
      spec: { method: 'POST', paths: [], bodies: [], token, connections: c },
      run: grpcUrl
        ? (durationSeconds) => runGrpcLoad({ url: grpcUrl, token, ids: some, streams: c, durationSeconds })
        : null,
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
      name: 'P1',
      title: 'POST + PATCH /api/v1/products (JWT)',
      spec: {
        method: 'POST',
        // As many creations as changes: the collection once for each product to change.
        paths: [...productIds.map(() => '/api/v1/products'), ...productPaths],
        methods: [...productIds.map(() => 'POST'), ...productIds.map(() => 'PATCH')],
        bodies: productBodies,
        token: jwt,
        connections: c,
      },
    },
    {
      name: 'W1',
      title: 'POST /api/v1/orders (JWT, an Idempotency-Key each)',
      spec: {
        method: 'POST',
        paths: ['/api/v1/orders'],
        bodies: orderProductIds.map((id) =>
          JSON.stringify({ items: [{ product_id: id, quantity: 1 }], payment_token: 'tok_visa' }),
        ),
        token: jwt,
        connections: c,
        uniqueHeader: 'Idempotency-Key',
        thinkMs: Number(opts['order-think']),
      },
      settle: () => ordersSettled(url, jwt),
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

// R1's second instance on the same database, with -redis-url (a redis-server of its own) and
// -cache-ttl; started for R1 alone, so that no other scenario shares the machine with it.
async function startCachedInstance(database: Database, stands: StandIns) {
  const redis = await spawnRedisServer();
  const stopRedis = async () => {
    running.delete(stopRedis);
    await redis.stop();
  };
  running.add(stopRedis);
  const flags = ['-redis-url', redis.url, '-cache-ttl', opts['cache-ttl'] as string];
  const service = await startService(stands, database, flags, false);
  console.log(`R1: a second instance ${service.url} with ${flags.join(' ')}`);
  return {
    service,
    stop: async () => {
      await service.stop();
      await stopRedis();
    },
  };
}

// A1: a rabbitmq-server, and a second instance on the same database with -amqp-url, whose
// relay publishes what the first instance commits under S4's load; both stop afterwards.
async function runA1(
  database: Database,
  stands: StandIns,
  url: string,
  token: string,
  s4: Scenario['spec'],
): Promise<PublishLatencyResult> {
  const rabbit = await spawnRabbitmqServer();
  const stopRabbit = () => rabbit.remove();
  running.add(stopRabbit);
  try {
    const relay = await startService(stands, database, ['-amqp-url', rabbit.url], false);
    try {
      console.log(`A1: rabbitmq-server at ${rabbit.url}, relaying instance ${relay.url}`);
      return await runPublishLatency({
        url,
        token,
        amqpUrl: rabbit.url,
        exchange: 'greenlight.events',
        durationSeconds: duration,
        load: (seconds) => load({ ...s4, url, durationSeconds: seconds }),
      });
    } finally {
      await relay.stop();
    }
  } finally {
    running.delete(stopRabbit);
    await stopRabbit();
  }
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
      ':(exclude)bench/partial-results.md',
    );
    return `${git('rev-parse', '--short', 'HEAD')}${changed ? '-dirty' : ''}`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const loadAtStart = loadavg()[0] as number;
  const generator = hasWrk() ? 'wrk' : 'node:http fallback (install wrk for lower overhead)';
  console.log(`load generator: ${generator}; ${connections} connections, ${duration} s a scenario`);
  const partialChoice = SCENARIOS.filter((s) => !wanted.has(s));
  if (partialChoice.length > 0)
    console.log(`PARTIAL run: ${[...wanted].join(', ')} only; it will not be recorded as a full row`);
  if (loadAtStart > availableParallelism() / 4)
    console.log(
      `the machine is not idle (load average ${loadAtStart.toFixed(1)} on ${availableParallelism()} cores): the figures measure the neighbours too`,
    );
  const before = lastFullRow(RESULTS_FILE, settings());
  console.log(
    before
      ? `changes against the last full row with these settings (${settings()}): ${before.date}, ${before.commit}, ${before.durationSeconds} s, ${before.machine}`
      : `no full row in bench/results.md with these settings (${settings()}): no changes to show`,
  );
  // Every figure measured, by scenario, and the ones that fell more than FLAG_PERCENT.
  const figures: Record<string, Figures> = {};
  const flagged: string[] = [];
  // Scenarios whose requests failed: their figures are not what they claim to measure.
  const failing: string[] = [];
  const show = (column: string, measured: Figures) => {
    figures[column] = measured;
    return describe(column, measured, before?.figures[column], flagged);
  };

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
  // W1's payment provider, always succeeding at once (in this process, as C1's upstream).
  const payments = await startPaymentsStandIn();
  const stands = (): StandIns => ({ smtpPort: sink.port, upstreamUrl, paymentsUrl: payments.url });
  let service: Service | undefined;
  let cachedMemory: ReturnType<typeof serviceMemory> | undefined;
  let token = opts.token ?? '';
  let ids: number[] = [];
  let url = opts.url;
  const otlp = opts.tracing ? new OtlpSink() : undefined;
  if (otlp && url) throw new Error('--tracing needs the service this benchmark starts (no --url)');
  let database: Database | undefined;
  if (!url) {
    await sink.start();
    database = await newDatabase();
    const otlpUrl = await otlp?.start();
    service = await startService(stands(), database, otlpUrl ? ['-otel-endpoint', otlpUrl] : []);
    url = service.url;
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
    wanted.has('S7') || wanted.has('S8') || wanted.has('P1') || wanted.has('W1')
      ? await prepareProducts(url)
      : { jwt: '', apiKey: '', productIds: [], orderProductIds: [] };
  const bcrypt = wanted.has('S6') ? bcryptLimitRps() : undefined;
  if (bcrypt) {
    console.log(
      `bcrypt cost 12: ${bcrypt.hashMs} ms a hash, so ${availableParallelism()} cores allow ${bcrypt.limitRps} logins/s`,
    );
  }

  const rows: Record<string, unknown>[] = [];
  const every = scenarios({ token, ids, ...products, grpcUrl: service?.grpcUrl, url });
  const s4Spec = every.find((s) => s.name === 'S4')?.spec as Scenario['spec'];
  for (const scenario of every.filter((s) => wanted.has(s.name))) {
    if ((scenario.cached && !database) || scenario.run === null) {
      console.log(`${scenario.name} skipped: it needs the service this benchmark starts`);
      continue;
    }
    const cached = scenario.cached && database ? await startCachedInstance(database, stands()) : undefined;
    const target = cached ? cached.service.url : url;
    // Unmeasured warm-up: pools open their connections, statements get prepared, caches fill.
    const measure = (seconds: number) =>
      scenario.run
        ? scenario.run(seconds)
        : load({ ...scenario.spec, url: target, durationSeconds: seconds });
    if (Number(opts.warmup) > 0) await measure(Number(opts.warmup));
    const servicePids = (cached ? cached.service : service)?.pids() ?? [];
    const cpuBefore = serviceCpuMicros(servicePids);
    const result = await measure(duration);
    const cpuUsed = serviceCpuMicros(servicePids) - cpuBefore;
    const settledS = await scenario.settle?.();
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
      ...(cached ? { x_cache_of_100: await xCacheSample(target, scenario.spec) } : {}),
      ...(settledS === undefined ? {} : { settled_s: settledS }),
      ...(scenario.name === 'S6' && bcrypt
        ? {
            rps_exact: Number(result.rps.toFixed(2)),
            ratio_to_bcrypt_limit: Number((result.rps / bcrypt.limitRps).toFixed(3)),
          }
        : {}),
      statuses: result.statuses,
    };
    rows.push(row);
    if (cached) {
      cachedMemory = serviceMemory(cached.service.pids());
      await cached.stop();
    }
    if (result.requests === 0) {
      console.log(`${row.scenario} ${row.title.padEnd(42)} no answer within ${duration} s: not measured`);
      continue;
    }
    const versus =
      row.ratio_to_bcrypt_limit === undefined
        ? `×baseline ${row.ratio_to_baseline}`
        : `${Math.round(row.ratio_to_bcrypt_limit * 100)} % of the bcrypt limit`;
    const cpu =
      row.service_cpu_us_per_request === undefined
        ? ''
        : `  service CPU ${row.service_cpu_us_per_request} µs/req`;
    const bytes =
      row.response_bytes !== undefined
        ? `  ${row.response_bytes} bytes a response`
        : row.x_cache_of_100
          ? `  X-Cache of 100 reads after it: ${JSON.stringify(row.x_cache_of_100)}`
          : row.settled_s !== undefined
            ? `  every order terminal ${row.settled_s} s after the load`
            : '';
    const measured = show(row.scenario, { rps: row.rps_exact ?? row.rps, p50: row.p50_ms, p99: row.p99_ms });
    if (errors > 0) failing.push(`${row.scenario} ${errors} errors`);
    console.log(
      `${row.scenario} ${row.title.padEnd(42)} ${measured}  errors ${errors}  409s ${conflicts}  ${versus}${cpu}${bytes}`,
    );
  }

  let bulk: BulkResult | undefined;
  if (wanted.has('B1')) {
    bulk = await runBulk(url, token, Number(opts['bulk-rows']));
    const measured = show('B1', { import: bulk.import_rows_per_s, export: bulk.export_rows_per_s });
    if (bulk.import_failed > 0) failing.push(`B1 ${bulk.import_failed} rows refused`);
    console.log(
      `B1 ${bulk.rows} rows (${bulk.upload_bytes} bytes NDJSON, ${bulk.export_bytes} exported), failed ${bulk.import_failed}: ${measured}`,
    );
  }

  let events: EventFanoutResult | undefined;
  if (wanted.has('E1')) {
    events = await runEventFanout(url, token, {
      clients: Number(opts['sse-clients']),
      rate: Number(opts['sse-rate']),
      durationSeconds: duration,
    });
    const delivered = events.expected > 0 ? (events.delivered / events.expected) * 100 : 0;
    if (events.delivered < events.expected)
      failing.push(`E1 ${events.expected - events.delivered} events not delivered`);
    const measured = show('E1', {
      delivered: Number(delivered.toFixed(1)),
      p50: events.p50_ms,
      p99: events.p99_ms,
    });
    console.log(
      `E1 ${events.connected} SSE clients × ${events.updates} updates, ${events.delivered} of ${events.expected} received: ${measured}, max ${events.max_ms} ms (latency from the write)`,
    );
  }

  let publish: PublishLatencyResult | undefined;
  if (wanted.has('A1')) {
    if (!service || !database) console.log('A1 skipped: it needs the service this benchmark starts');
    else if (!hasRabbitmqServer())
      console.log('A1 skipped: rabbitmq-server is not installed (apt-get install rabbitmq-server)');
    else {
      publish = await runA1(database, stands(), url, token, s4Spec);
      if (publish.missing > 0) failing.push(`A1 ${publish.missing} events not received`);
      const measured = show('A1', { events: publish.events_per_s, p50: publish.p50_ms, p99: publish.p99_ms });
      console.log(
        `A1 movie.created on RabbitMQ under S4's load (${publish.s4_rps} req/s): ${publish.received} events, ${publish.missing} missing, ${measured}, max ${publish.max_ms} ms (latency of ${publish.probes} probes from their POST)`,
      );
    }
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
    if (callbacks.non_200 > 0) failing.push(`C1 ${callbacks.non_200} answers not 200`);
    const measured = show('C1', {
      accepted: callbacks.accepted_per_s,
      p50: callbacks.p50_ms,
      p99: callbacks.p99_ms,
    });
    console.log(
      `C1 accepted ${measured} (non-200: ${callbacks.non_200})  max ${callbacks.max_ms} ms  ${callbacks.lookups_per_s} lookups/s  backlog ≤ ${callbacks.max_backlog} (oldest ≤ ${callbacks.max_backlog_age_s} s), drained ${callbacks.drained_after_s ?? 'not within 60'} s after the load`,
    );
  }
  await upstream.close();
  await payments.close();

  // Memory last, when every scenario has had its turn: the peak is the most each process
  // held at any time, the end what it still holds.
  const memory = service ? serviceMemory(service.pids()) : [];
  const rss = memoryFigures(memory);
  await service?.stop();
  await sink.stop();
  await otlp?.stop();
  if (otlp) console.log(`tracing: ${otlp.requests} OTLP exports received, ${otlp.bytes} bytes`);

  const missing = SCENARIOS.filter((s) => !figures[s]);
  const full = missing.length === 0;
  const report = {
    date: new Date().toISOString(),
    commit: commit(),
    machine: `${availableParallelism()} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    load_average_at_start: Number(loadAtStart.toFixed(2)),
    note: opts.note ?? null,
    settings: settings(),
    full,
    compared_with: before ? { date: before.date, commit: before.commit } : null,
    generator,
    connections,
    duration_s: duration,
    workers: Number(opts.workers),
    tracing: otlp ? { otlp_exports: otlp.requests, otlp_bytes: otlp.bytes } : null,
    baseline: { rps: Math.round(baseline.rps), p99_ms: Number(baseline.p99.toFixed(2)) },
    bcrypt_cost_12: bcrypt ? { hash_ms: bcrypt.hashMs, limit_rps: bcrypt.limitRps } : null,
    peak_rss_mib: memory.length > 0 ? Math.max(...memory.map((p) => p.peak_mib)) : null,
    processes: memory,
    r1_instance_processes: cachedMemory ?? null,
    scenarios: rows,
    bulk: bulk ?? null,
    events: events ?? null,
    publish: publish ?? null,
    callbacks: callbacks ?? null,
    flagged,
    failing,
  };
  const outDir = join(ROOT, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const jsonFile = join(outDir, `bench-${report.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);

  if (callbacks && opts.record) {
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

  const row: Row = {
    date: report.date.slice(0, 16),
    commit: report.commit,
    settings: report.settings,
    machine: [
      `${report.machine}, load ${report.load_average_at_start} at start`,
      ...(opts.note ? [opts.note] : []),
      ...(failing.length > 0 ? [`failed: ${failing.join(', ')}`] : []),
    ].join('; '),
    durationSeconds: duration,
    baselineRps: report.baseline.rps,
    figures: rss ? { ...figures, [RSS_COLUMN]: rss } : figures,
  };
  console.log(
    `\nSummary${before ? ` (changes against the full row of ${before.date}, ${before.commit})` : ''}:`,
  );
  for (const s of SCENARIOS) {
    const measured = figures[s];
    if (measured) console.log(`  ${s}  ${describe(s, measured, before?.figures[s], [])}`);
  }
  // A subset of the scenarios loads the processes less: only a full run's memory compares.
  if (rss)
    console.log(
      `  RSS ${describe(RSS_COLUMN, rss, full ? before?.figures[RSS_COLUMN] : undefined, flagged)}`,
    );
  for (const p of memory)
    console.log(`  ${p.role} (pid ${p.pid}): peak ${p.peak_mib} MiB, at the end ${p.now_mib} MiB`);
  for (const p of cachedMemory ?? [])
    console.log(
      `  R1 instance ${p.role} (pid ${p.pid}): peak ${p.peak_mib} MiB, at the end ${p.now_mib} MiB`,
    );
  if (failing.length > 0) console.log(`! requests failed: ${failing.join(', ')} (see the JSON's statuses)`);
  if (flagged.length > 0)
    console.log(
      `! ${flagged.length} figure${flagged.length === 1 ? '' : 's'} more than ${FLAG_PERCENT} % worse than the last full row: ${flagged.join(', ')}`,
    );
  if (full) {
    if (opts.record) appendRow(RESULTS_FILE, row, RESULTS_INTRO);
    console.log(
      `FULL run: every scenario measured${opts.record ? '; its row is appended to bench/results.md' : ' (--no-record: not written)'}`,
    );
  } else {
    if (opts.record) appendRow(PARTIAL_RESULTS_FILE, row, PARTIAL_RESULTS_INTRO);
    console.log(
      `PARTIAL run: not measured ${missing.join(', ')}; not a full row${opts.record ? ', appended to bench/partial-results.md' : ' (--no-record: not written)'}`,
    );
  }
  const took = Math.round((performance.now() - startedAt) / 1000);
  console.log(`JSON: ${jsonFile}; the run took ${Math.floor(took / 60)} min ${took % 60} s`);
}

// The RSS column: the primary's and the largest worker's (or the single process's).
function memoryFigures(memory: readonly ProcessMemory[]): Figures | undefined {
  if (memory.length === 0) return undefined;
  const single = memory.find((p) => p.role === 'service');
  if (single) return { service_peak: single.peak_mib, service_end: single.now_mib };
  const primary = memory.find((p) => p.role === 'primary');
  const workers = memory.filter((p) => p.role.startsWith('worker'));
  return {
    ...(primary ? { primary_peak: primary.peak_mib, primary_end: primary.now_mib } : {}),
    ...(workers.length > 0
      ? {
          worker_peak: Math.max(...workers.map((p) => p.peak_mib)),
          worker_end: Math.max(...workers.map((p) => p.now_mib)),
        }
      : {}),
  };
}

const LEGEND = `Cells: req/s, p50 and p99 in ms; S6's req/s to two decimals; B1 rows a second; E1
the share of updates delivered to every client and the latency from the write; C1 callbacks
accepted a second and their answers' latency; RSS the primary's and the largest worker's, at
their peak and at the end of the run. "settings": only rows of the same settings are
compared. "machine, load": the 1-minute load average when the run started (near 0 when the
machine was idle), the \`--note\` given, and any failed requests.`;

const RESULTS_INTRO = `# Benchmark results

Full runs of \`npm run bench\` (every scenario), appended by it. Each run prints every figure's
change against the last row here with its settings, and flags (!) one more than 15 % worse.

${LEGEND}
`;

const PARTIAL_RESULTS_INTRO = `# Benchmark results of partial runs

Runs of \`npm run bench -- --scenarios ...\` (a subset, or a run that had to skip a scenario),
appended by it; nothing is compared with them. Full runs are in bench/results.md.

${LEGEND}
`;

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

// A failure, in main or in an event handler outside it, stops what the run started before
// exiting: a service, its database or a broker left running would skew every later run.
async function fail(err: unknown) {
  console.error(err);
  for (const stop of [...running].reverse()) await stop().catch(() => undefined);
  process.exit(1);
}

withoutAutogroup();
process.on('uncaughtException', fail);
main().catch(fail);
