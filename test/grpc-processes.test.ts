// `greenlight serve` as a real process with its gRPC listener: the independent client reads
// what REST wrote, the metrics count the calls, every worker of -workers 2 serves the port,
// and SIGTERM ends an open change stream UNAVAILABLE (resume after the last id) and exits 0.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPool } from '../src/platform/db.ts';
import { grpcJsClient, grpcJsError } from './grpc-helpers.ts';
import { createTestDatabase, createUser, waitFor } from './helpers.ts';
import { freePort, startServer } from './processes.ts';

test('when serve runs with -grpc-addr, then gRPC reads what REST wrote, the calls are counted, and SIGTERM ends a stream UNAVAILABLE and exits 0', async (t) => {
  const dsn = await createTestDatabase();
  const db = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  const user = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const grpcPort = await freePort();
  const server = await startServer(t, ['-db-dsn', dsn, '-grpc-addr', `127.0.0.1:${grpcPort}`]);
  const listening = await server.waitForLog('starting gRPC listener');
  assert.equal(listening.addr, `127.0.0.1:${grpcPort}`);

  const created = await fetch(`http://127.0.0.1:${server.port}/v1/movies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.token}` },
    body: JSON.stringify({ title: 'Over REST', year: 2020, runtime: '90 mins', genres: ['drama'] }),
  });
  const { movie } = (await created.json()) as { movie: { id: number } };
  const { call, raw, metadata } = grpcJsClient(
    `127.0.0.1:${grpcPort}`,
    'greenlight.v1.MoviesService',
    user.token,
  );
  const read = await call.GetMovie({ id: String(movie.id) });
  assert.equal(read.movie.title, 'Over REST');
  assert.equal(read.movie.runtimeMinutes, 90);

  const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
  assert.match(
    metrics,
    /greenlight_grpc_requests_total\{service="greenlight\.v1\.MoviesService",method="GetMovie",code="OK"\} 1/,
  );
  const rpcLine = await server.waitForLog('rpc');
  assert.equal(rpcLine.code, 'OK');
  assert.equal(rpcLine.method, 'GetMovie');

  const stream = (raw.WatchMovieChanges as (...a: unknown[]) => NodeJS.EventEmitter).call(
    raw,
    {},
    metadata(),
  );
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    stream.on('error', resolve);
    stream.on('data', () => {});
  });
  await waitFor('the stream to open', async () =>
    (await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()).includes(
      'greenlight_streams_open{transport="grpc"} 1',
    ),
  );
  server.child.kill('SIGTERM');
  const end = await ended;
  assert.equal(end.code, 14, end.details);
  assert.match(end.details, /server shutting down/);
  assert.equal((await server.waitForExit(20_000)).code, 0);
  assert.notEqual((await grpcJsError(call.GetMovie({ id: String(movie.id) }))).code, 0);
});

test('when serve runs -workers 2, then each worker serves the gRPC port', async (t) => {
  const dsn = await createTestDatabase();
  const grpcPort = await freePort();
  const server = await startServer(
    t,
    ['-db-dsn', dsn, '-workers', '2', '-grpc-addr', `127.0.0.1:${grpcPort}`],
    60_000,
  );
  await waitFor(
    'both workers to listen',
    () =>
      server.logs.filter((line) => line.msg === 'starting gRPC listener').length === 2 ? true : undefined,
    60_000,
  );
  const health = grpcJsClient(`127.0.0.1:${grpcPort}`, 'grpc.health.v1.Health').call;
  assert.equal((await health.Check({})).status, 'SERVING');
});
