// The gRPC listener's limits and standard services, in-process: change streams with resume,
// deadlines that stop the database work, the message size, the rate limiter, health,
// reflection, malformed input, and the status table row by row.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { BadRequestSchema, RetryInfoSchema } from '../gen/google/rpc/error_details_pb.ts';
import { MoviesService } from '../gen/greenlight/v1/movies_pb.ts';
import { ProductsService } from '../gen/greenlight/v1/products_pb.ts';
import {
  Health,
  HealthCheckResponse_ServingStatus as HealthStatus,
} from '../gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../gen/grpc/reflection/v1/reflection_pb.ts';
import { STATUS_CODES, toConnectError } from '../src/grpc/errors.ts';
import { healthService } from '../src/grpc/health.ts';
import { IdempotencyKeyBusyError, OrderConflictError } from '../src/orders/order.ts';
import {
  EditConflictError,
  NotFoundError,
  RateLimitedError,
  ValidationError,
} from '../src/platform/errors.ts';
import { NotProductOwnerError, RuleViolationError } from '../src/products/product.ts';
import {
  connectClient,
  connectFailure,
  GRPC_FLAGS,
  grpc,
  grpcJsClient,
  grpcJsError,
  startGrpc,
} from './grpc-helpers.ts';
import { buildTestApp, captureLogger, createMovie, waitFor, withToken } from './helpers.ts';

const { status } = grpc;

// A reflection answer as proto-loader decodes it.
type Answer = {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number };
};

// The answers of one reflection stream (`version` v1 or v1alpha) to `requests`.
async function reflect(address: string, version: string, requests: object[]): Promise<Answer[]> {
  const { raw } = grpcJsClient(address, `grpc.reflection.${version}.ServerReflection`);
  const call = (raw.ServerReflectionInfo as () => grpc.ClientDuplexStream<object, Answer>).call(raw);
  const answers: Answer[] = [];
  const done = new Promise((resolve, reject) => {
    call.on('data', (answer) => answers.push(answer));
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (const request of requests) call.write(request);
  call.end();
  await done;
  return answers;
}

// One call by hand over HTTP/2 on `session`, as a client that neither resets nor gives up
// would make it: the answer's headers and trailers together, or { timedOut } when none came
// in `waitMs`.
function callOn(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Buffer = Buffer.from([0, 0, 0, 0, 0]),
  waitMs = 2_000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    const answer: Record<string, unknown> = {};
    const timer = setTimeout(() => resolve({ timedOut: true }), waitMs);
    req.on('response', (h) => Object.assign(answer, h));
    req.on('trailers', (t) => Object.assign(answer, t));
    req.on('error', reject);
    req.on('end', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    req.resume();
    req.end(body);
  });
}

// The same on a connection of its own.
async function rawCall(
  address: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
  waitMs?: number,
): Promise<Record<string, unknown>> {
  const session = http2.connect(`http://${address}`);
  try {
    return await callOn(session, path, headers, body, waitMs);
  } finally {
    session.destroy();
  }
}

describe('change streams', async () => {
  const { app, config, token, lines } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const api = withToken(app, token);

  test('when movies change over REST, then the stream sends each change once in order, and a resume from an id misses and repeats nothing', async () => {
    const client = connectClient(MoviesService, address, 'grpc', token);
    const live = new AbortController();
    const stream = client.watchMovieChanges({}, { signal: live.signal })[Symbol.asyncIterator]();
    // Open once the metrics count it: a change made from then on reaches it.
    const first = stream.next();
    await waitFor('the stream to open', async () =>
      (await app.inject('/metrics')).body.includes('greenlight_streams_open{transport="grpc"} 1'),
    );
    const made = [];
    for (let i = 0; i < 4; i++) made.push(await createMovie(api, { title: `Streamed ${i}` }));
    const received = [];
    received.push((await first).value);
    for (let i = 1; i < 4; i++) received.push((await stream.next()).value);
    live.abort();
    assert.deepEqual(
      received.map((m) => [m.event.type, Number(m.movie.id), m.movie.title]),
      made.map((m) => ['movie.created', m.id, m.title]),
    );
    const ids = received.map((m) => m.event.id);
    const resumed = new AbortController();
    const again = client.watchMovieChanges({ afterEventId: ids[1] }, { signal: resumed.signal });
    const after = [];
    for await (const message of again) {
      after.push(message.event?.id);
      if (after.length === 2) break;
    }
    assert.deepEqual(after, ids.slice(2));
  });

  test('when a resume id is negative or past the largest safe integer, then INVALID_ARGUMENT names after_event_id, as SSE refuses it', async () => {
    const client = connectClient(MoviesService, address, 'grpc', token);
    for (const afterEventId of [-1n, BigInt(Number.MAX_SAFE_INTEGER) + 1n, 9223372036854775807n]) {
      const err = await connectFailure(
        (async () => {
          for await (const _ of client.watchMovieChanges({ afterEventId })) return;
        })(),
      );
      assert.equal(err.code, Code.InvalidArgument, String(afterEventId));
      const [badRequest] = err.findDetails(BadRequestSchema);
      assert.deepEqual(
        badRequest?.fieldViolations.map((v) => [v.field, v.description]),
        [['after_event_id', 'must be a non-negative integer']],
      );
    }
  });

  test('when the deadline of a stream passes while it opens, then it ends DEADLINE_EXCEEDED and is not left open', async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await rawCall(address, '/greenlight.v1.MoviesService/WatchMovieChanges', {
        authorization: `Bearer ${token}`,
        'grpc-timeout': '1m',
      });
      assert.equal(answer['grpc-status'], String(status.DEADLINE_EXCEEDED));
    }
    await waitFor(
      'no stream left open',
      async () => (await app.inject('/metrics')).body.includes('greenlight_streams_open{transport="grpc"} 0'),
      3_000,
    );
  });

  test('when clients reset their streams at any moment, then the calls end CANCELLED and nothing is logged as a failure', async () => {
    const session = http2.connect(`http://${address}`);
    session.on('error', () => {});
    const paths = ['/greenlight.v1.MoviesService/WatchMovieChanges', '/grpc.health.v1.Health/Watch'];
    const resets = Array.from(
      { length: 200 },
      (_, i) =>
        new Promise<void>((resolve) => {
          const req = session.request({
            ':method': 'POST',
            ':path': paths[i % 2] as string,
            'content-type': 'application/grpc',
            te: 'trailers',
            authorization: `Bearer ${token}`,
            ...(i % 4 < 2 ? { 'grpc-timeout': '1n' } : {}),
          });
          req.on('error', () => {});
          req.end(Buffer.from([0, 0, 0, 0, 0]));
          // Before, while and after each opens.
          setTimeout(() => {
            req.close(http2.constants.NGHTTP2_CANCEL);
            resolve();
          }, i % 20);
        }),
    );
    await Promise.all(resets);
    await createMovie(api, { title: 'After the resets' });
    await waitFor('the streams to end', async () =>
      (await app.inject('/metrics')).body.includes('greenlight_streams_open{transport="grpc"} 0'),
    );
    session.destroy();
    const metrics = (await app.inject('/metrics')).body;
    assert.doesNotMatch(metrics, /greenlight_grpc_requests_total\{[^}]*code="(INTERNAL|UNKNOWN)"/);
    assert.deepEqual(
      lines.filter((line) => line.msg === 'gRPC call failed'),
      [],
    );
  });

  test('when a product stream has no credential, then UNAUTHENTICATED with the products API message', async () => {
    const client = connectClient(ProductsService, address, 'grpc');
    const err = await connectFailure(
      (async () => {
        for await (const _ of client.watchProductChanges({})) return;
      })(),
    );
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(err.rawMessage, 'authorization header is required');
  });
});

describe('deadlines', async () => {
  const { app, db, config, token } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const movie = await createMovie(withToken(app, token));
  const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', token).call;

  test('when an update waits on a locked row past its deadline, then DEADLINE_EXCEEDED, PostgreSQL cancels the statement, nothing changes and the server stays healthy', async () => {
    const locker = await db.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT id FROM movies WHERE id = $1 FOR UPDATE', [movie.id]);
      const err = await grpcJsError(
        movies.UpdateMovie({ id: movie.id, year: 1999 }, { deadline: Date.now() + 300 }),
      );
      assert.equal(err.code, status.DEADLINE_EXCEEDED);
      // The pool's statement_timeout is 3 s: only the deadline's can have cancelled it by now.
      await waitFor(
        'the update to be cancelled',
        async () => {
          const { rows } = await locker.query(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'UPDATE movies%' AND state = 'active'",
          );
          return rows[0].count === 0;
        },
        2_000,
      );
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    const read = await movies.GetMovie({ id: movie.id });
    assert.equal(read.movie.year, movie.year);
    assert.equal(read.movie.version, 1);
  });

  test('when the deadline has all but passed on arrival, then DEADLINE_EXCEEDED', async () => {
    const err = await grpcJsError(movies.ListMovies({}, { deadline: Date.now() + 1 }));
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.ok((await movies.ListMovies({})).movies.length > 0);
  });
});

describe('limits and malformed input', async () => {
  const { app, config, token } = await buildTestApp({
    flags: [...GRPC_FLAGS, '-limiter-enabled=true', '-limiter-rps', '1', '-limiter-burst', '3'],
  });
  const address = await startGrpc(app, config);

  test('when a message is over -grpc-max-message, then RESOURCE_EXHAUSTED', async () => {
    const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', token).call;
    const err = await grpcJsError(movies.CreateMovie({ title: 'x'.repeat(5 * 1024 * 1024) }));
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  });

  test('when a client goes over its rate, then RESOURCE_EXHAUSTED with the REST message and RetryInfo', async () => {
    const client = connectClient(MoviesService, address, 'grpc', token);
    let err: ConnectError | undefined;
    for (let i = 0; i < 10 && !err; i++) {
      err = await client.listMovies({}).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    }
    assert.ok(err);
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.rawMessage, 'rate limit exceeded');
    const [retry] = err.findDetails(RetryInfoSchema);
    assert.ok(Number(retry?.retryDelay?.seconds) >= 1);
  });

  test('when a gRPC request body is garbage, then an error status, and the server goes on answering', async () => {
    const answer = await rawCall(
      address,
      '/greenlight.v1.MoviesService/GetMovie',
      {},
      Buffer.from([0, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    );
    assert.notEqual(answer['grpc-status'], undefined);
    assert.notEqual(answer['grpc-status'], '0');
    const health = connectClient(Health, address, 'grpc');
    assert.equal((await health.check({})).status, 1);
  });
});

describe('health and reflection', async () => {
  const { app, db, config } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);

  test('when health is asked about the server, a service and an unknown one, then SERVING, SERVING and NOT_FOUND', async () => {
    const health = grpcJsClient(address, 'grpc.health.v1.Health').call;
    assert.equal((await health.Check({})).status, 'SERVING');
    assert.equal((await health.Check({ service: 'greenlight.v1.MoviesService' })).status, 'SERVING');
    assert.equal((await grpcJsError(health.Check({ service: 'nope.Service' }))).code, status.NOT_FOUND);
  });

  test('when Watch asks about an unknown service, then SERVICE_UNKNOWN, and the call stays open as the protocol says', async () => {
    const health = connectClient(Health, address, 'grpc');
    const stop = new AbortController();
    const stream = health.watch({ service: 'nope.Service' }, { signal: stop.signal })[Symbol.asyncIterator]();
    assert.equal((await stream.next()).value?.status, HealthStatus.SERVICE_UNKNOWN);
    const next = stream.next().then(
      () => 'ended',
      () => 'cancelled',
    );
    const waited = await Promise.race([next, new Promise((resolve) => setTimeout(resolve, 300, 'open'))]);
    assert.equal(waited, 'open');
    stop.abort();
    assert.equal(await next, 'cancelled');
  });

  test('when 300 health checks come at once, then they share one readiness query', async () => {
    let queries = 0;
    const counted = {
      query: (...args: unknown[]) => {
        queries++;
        return (db.query as (...a: unknown[]) => unknown)(...args);
      },
    };
    const service = healthService({
      db: counted as unknown as typeof db,
      services: [],
      draining: () => false,
    });
    const answers = await Promise.all(
      Array.from({ length: 300 }, () => service.check({ service: '' } as never, {} as never)),
    );
    assert.ok(answers.every((a) => (a as { status: number }).status === HealthStatus.SERVING));
    assert.ok(queries <= 2, `${queries} queries`);
  });

  test('when reflection lists the services and asks for the file of a method, then it names them and sends the file with its imports', async () => {
    for (const version of ['v1', 'v1alpha']) {
      const answers = await reflect(address, version, [
        { listServices: '' },
        { fileContainingSymbol: 'greenlight.v1.MoviesService.GetMovie' },
        { fileContainingSymbol: 'greenlight.v1.Nothing' },
      ]);
      const services = (answers[0]?.listServicesResponse?.service ?? []).map((s) => s.name);
      assert.ok(services.includes('greenlight.v1.MoviesService'), services.join());
      assert.ok(services.includes('grpc.health.v1.Health'), services.join());
      const files = (answers[1]?.fileDescriptorResponse?.fileDescriptorProto ?? []).map(
        (bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name,
      );
      assert.deepEqual(files, ['greenlight/v1/movies.proto', 'greenlight/v1/shared.proto']);
      assert.equal(answers[2]?.errorResponse?.errorCode, status.NOT_FOUND);
    }
    const reflection = connectClient(ServerReflection, address, 'grpc');
    for await (const answer of reflection.serverReflectionInfo(
      (async function* () {
        yield { messageRequest: { case: 'fileByFilename' as const, value: 'greenlight/v1/products.proto' } };
      })(),
    )) {
      assert.equal(answer.messageResponse.case, 'fileDescriptorResponse');
    }
  });
});

describe('the status table', () => {
  const { logger, lines } = captureLogger();
  test('when each kind of failure is mapped, then its row gives the code, the REST message and the details', () => {
    const rows: [Error, 'book' | 'products', Code, string][] = [
      [new NotFoundError(), 'book', Code.NotFound, 'the requested resource could not be found'],
      [
        new EditConflictError(),
        'book',
        Code.FailedPrecondition,
        'unable to update the record due to an edit conflict, please try again',
      ],
      [
        new ValidationError({ year: 'must be provided' }),
        'book',
        Code.InvalidArgument,
        'year: must be provided',
      ],
      [new RateLimitedError(2, 4), 'book', Code.ResourceExhausted, 'rate limit exceeded'],
      [
        new NotProductOwnerError(),
        'products',
        Code.PermissionDenied,
        'forbidden: you do not own this product',
      ],
      [
        new OrderConflictError('conflict: order 7 is confirmed and cannot be cancelled'),
        'products',
        Code.FailedPrecondition,
        'conflict: order 7 is confirmed and cannot be cancelled',
      ],
      [
        new IdempotencyKeyBusyError(),
        'products',
        Code.Aborted,
        'conflict: a request with this idempotency key is still in progress',
      ],
      [
        new RuleViolationError('validation: quantity must be between 1 and 1000', 'items[0].quantity'),
        'products',
        Code.InvalidArgument,
        'validation: quantity must be between 1 and 1000',
      ],
      [
        new Error('boom'),
        'book',
        Code.Internal,
        'the server encountered a problem and could not process your request',
      ],
    ];
    for (const [err, dialect, code, message] of rows) {
      const mapped = toConnectError(err, dialect, logger);
      assert.deepEqual([mapped.code, mapped.rawMessage], [code, message], err.constructor.name);
    }
    assert.equal(lines.filter((line) => line.msg === 'gRPC call failed').length, 1);
    assert.deepEqual(
      [...STATUS_CODES.values()].every((code) => code !== Code.Internal),
      true,
    );
  });
});

describe('the listener', () => {
  test('when -grpc-http1=false, then gRPC is served and an HTTP/1.1 Connect call is not', async () => {
    const { app, config, token } = await buildTestApp({ flags: [...GRPC_FLAGS, '-grpc-http1=false'] });
    const address = await startGrpc(app, config);
    const health = connectClient(Health, address, 'grpc');
    assert.equal((await health.check({})).status, 1);
    await connectFailure(connectClient(MoviesService, address, 'connect', token).listMovies({}));
  });

  test('when -grpc-tls-cert and -grpc-tls-key are given, then gRPC over HTTP/2 and Connect over HTTP/1.1 both speak TLS', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'greenlight-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const { app, config } = await buildTestApp({
      flags: [...GRPC_FLAGS, '-grpc-tls-cert', cert, '-grpc-tls-key', key],
    });
    const address = await startGrpc(app, config);
    const ca = readFileSync(cert);
    const h2 = createGrpcTransport({ baseUrl: `https://${address}`, nodeOptions: { ca } });
    assert.equal((await createClient(Health, h2).check({})).status, 1);
    const h1 = createConnectTransport({
      baseUrl: `https://${address}`,
      httpVersion: '1.1',
      nodeOptions: { ca },
    });
    const movies = createClient(MoviesService, h1);
    const err = await connectFailure(movies.listMovies({}));
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(err.rawMessage, 'you must be authenticated to access this resource');
  });
});

describe('protocol edges', async () => {
  const { app, config, token } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  await createMovie(withToken(app, token));

  test('when a deadline is further off than a timer can wait (30 days, 600 hours), then the call runs as if it had none, on either path', async () => {
    const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', token).call;
    const thirtyDays = Date.now() + 30 * 24 * 3600 * 1000;
    assert.ok((await movies.ListMovies({}, { deadline: thirtyDays })).movies.length > 0);
    const stream = await rawCall(address, '/greenlight.v1.MoviesService/WatchMovieChanges', {
      authorization: `Bearer ${token}`,
      'grpc-timeout': '600H',
    });
    assert.deepEqual(stream, { timedOut: true }, 'the stream is still open');
    const connect = await fetch(`http://${address}/greenlight.v1.MoviesService/ListMovies`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'connect-timeout-ms': '3000000000',
        authorization: `Bearer ${token}`,
      },
      body: '{}',
    });
    assert.equal(connect.status, 200, await connect.clone().text());
  });

  test('when a gRPC client calls a method or service the server lacks, then UNIMPLEMENTED, as grpc-go words it', async () => {
    const method = await rawCall(address, '/greenlight.v1.MoviesService/Nope', {});
    assert.deepEqual(
      [method[':status'], method['grpc-status'], method['grpc-message']],
      [200, String(status.UNIMPLEMENTED), 'unknown method Nope for service greenlight.v1.MoviesService'],
    );
    const service = await rawCall(address, '/nope.v1.Nothing/Get', {});
    assert.deepEqual(
      [service['grpc-status'], service['grpc-message']],
      [String(status.UNIMPLEMENTED), 'unknown service nope.v1.Nothing'],
    );
    const plain = await fetch(`http://${address}/nope`, { method: 'POST', body: '{}' });
    assert.equal(plain.status, 404);
  });

  test('when a Connect JSON request has a field the message lacks, then INVALID_ARGUMENT and nothing changes, as REST refuses an unknown key', async () => {
    const answer = await fetch(`http://${address}/greenlight.v1.MoviesService/UpdateMovie`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ id: '1', titel: 'typo' }),
    });
    assert.equal(answer.status, 400);
    assert.equal((await answer.json()).code, 'invalid_argument');
    const movie = await grpcJsClient(address, 'greenlight.v1.MoviesService', token).call.GetMovie({ id: 1 });
    assert.equal(movie.movie.version, 1);
  });

  test('when a message has a flag bit besides compression set, then INVALID_ARGUMENT', async () => {
    const answer = await rawCall(
      address,
      '/greenlight.v1.MoviesService/GetMovie',
      { authorization: `Bearer ${token}` },
      Buffer.from([0x80, 0, 0, 0, 2, 0x08, 0x01]),
    );
    assert.equal(answer['grpc-status'], String(status.INVALID_ARGUMENT));
  });

  test('when a reflection request names nothing, then an INVALID_ARGUMENT error response', async () => {
    const answers = await reflect(address, 'v1', [{}]);
    assert.equal(answers[0]?.errorResponse?.errorCode, status.INVALID_ARGUMENT);
  });
});

describe("the gRPC port's connection limits, as the HTTP port's", async () => {
  const { app, config, token } = await buildTestApp({
    flags: [
      ...GRPC_FLAGS,
      '-grpc-max-streams',
      '50',
      '-read-header-timeout',
      '1s',
      '-read-timeout',
      '1s',
      '-idle-timeout',
      '1s',
      '-max-connections-per-ip',
      '4',
    ],
  });
  const address = await startGrpc(app, config);

  // A connection's life: its server's settings, and when (if) the server closed it.
  const connect = () => {
    const session = http2.connect(`http://${address}`);
    session.on('error', () => {});
    const closed = new Promise<number>((resolve) => {
      const opened = Date.now();
      session.once('close', () => resolve(Date.now() - opened));
    });
    const settings = new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
    return { session, closed, settings };
  };

  test('when a client connects, then it is told -grpc-max-streams, and the connection closes once idle for -idle-timeout', async () => {
    const { session, closed, settings } = connect();
    assert.equal((await settings).maxConcurrentStreams, 50);
    const answer = await callOn(session, '/grpc.health.v1.Health/Check', {});
    assert.equal(answer['grpc-status'], '0');
    const lasted = await closed;
    assert.ok(lasted >= 900 && lasted < 5_000, `closed after ${lasted} ms`);
  });

  test('when a connection sends nothing, then it is closed after -read-header-timeout', async () => {
    const [host, port] = address.split(':');
    const socket = net.connect(Number(port), host);
    socket.on('error', () => {});
    const opened = Date.now();
    const closed = await Promise.race([
      new Promise((resolve) => socket.once('close', () => resolve(true))),
      new Promise((resolve) => setTimeout(resolve, 5_000, false)),
    ]);
    socket.destroy();
    const lasted = Date.now() - opened;
    assert.ok(closed && lasted >= 900, `closed: ${closed}, after ${lasted} ms`);
  });

  test('when a call sends half its message and waits, then it is reset after -read-timeout', async () => {
    const { session } = connect();
    try {
      const code = await new Promise<number>((resolve) => {
        const req = session.request({
          ':method': 'POST',
          ':path': '/greenlight.v1.MoviesService/GetMovie',
          'content-type': 'application/grpc',
          te: 'trailers',
          authorization: `Bearer ${token}`,
        });
        req.on('error', () => {});
        req.on('close', () => resolve(req.rstCode));
        setTimeout(resolve, 5_000, -1);
        req.resume();
        req.write(Buffer.from([0, 0, 0, 0, 10, 0x08]));
      });
      assert.equal(code, http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
    }
  });

  test('when one address opens more connections than -max-connections-per-ip, then the extra ones are closed at once', async () => {
    const clients = Array.from({ length: 6 }, connect);
    const outcomes = await Promise.all(
      clients.map(({ settings, closed }) =>
        Promise.race([settings.then(() => 'served'), closed.then(() => 'refused')]),
      ),
    );
    for (const { session } of clients) session.destroy();
    assert.deepEqual(outcomes.filter((o) => o === 'served').length, 4, outcomes.join());
  });
});
