// Stopping the real process as operators and supervisors do: SIGTERM to `npm start`, a
// terminal's Ctrl-C to the whole process group, and SIGTERM under keep-alive load, which
// must lose no request and close every connection with `Connection: close`; open SSE
// streams end with a final event.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { Agent, get, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPool } from '../src/platform/db.ts';
import { isRunning } from '../src/platform/embedded-postgres.owner.ts';
import { createTestDatabase, createUser, type LogLine, testConfig } from './helpers.ts';
import {
  freePort,
  type Greenlight,
  SERVE_FLAGS,
  spawnLogged,
  startServer,
  tempDataDir,
  withTimeout,
} from './processes.ts';

const dsn = await createTestDatabase();

function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const problems = (proc: Greenlight): LogLine[] =>
  proc.logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'warn');

describe('npm start', () => {
  // The embedded PostgreSQL of a test that failed half-way must not outlive it.
  function cleanUp(npm: Greenlight, dataDir: string): void {
    try {
      process.kill(-(npm.child.pid as number), 'SIGKILL');
    } catch {
      // the group is gone
    }
    const pidFile = join(dataDir, 'postgres', 'postmaster.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
      } catch {
        // not running
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  }

  // `npm start` on an embedded PostgreSQL of its own, in a process group of its own (as a
  // terminal runs it); resolves once it serves.
  async function npmStart(t: TestContext, dataDir: string) {
    const dbPort = await freePort();
    const npm = spawnLogged(
      t,
      'npm',
      ['start', '--', ...SERVE_FLAGS, '-data-dir', dataDir, '-embedded-db-port', String(dbPort)],
      { detached: true },
    );
    t.after(() => cleanUp(npm, dataDir));
    const line = await npm.waitForLog('starting server', 90_000);
    const port = Number(String(line.addr).split(':').pop());
    const postmaster = Number(
      readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    assert.equal((await fetch(`http://127.0.0.1:${port}/v1/healthcheck`)).status, 200);
    return { npm, port, dbPort, server: line.pid as number, postmaster };
  }

  async function assertAllGone(started: Awaited<ReturnType<typeof npmStart>>): Promise<void> {
    const { npm, port, dbPort, server, postmaster } = started;
    for (const deadline = Date.now() + 5_000; isRunning(server) || isRunning(postmaster); await sleep(50)) {
      if (Date.now() > deadline) break;
    }
    assert.ok(!isRunning(server), `the server (pid ${server}) still runs\n${npm.stdout()}`);
    assert.ok(!isRunning(postmaster), `the embedded PostgreSQL (pid ${postmaster}) still runs`);
    assert.equal(await tryConnect(port), 'ECONNREFUSED');
    assert.equal(await tryConnect(dbPort), 'ECONNREFUSED');
    assert.deepEqual(problems(npm), [], npm.stdout());
    assert.doesNotMatch(npm.stderr(), /error/i);
    const messages = npm.logs.map((l) => l.msg);
    assert.ok(messages.includes('embedded PostgreSQL stopped'), npm.stdout());
    assert.ok(messages.includes('stopped server'), npm.stdout());
  }

  test('when a supervisor sends SIGTERM to npm start, then the server stops gracefully with its embedded PostgreSQL and frees the port', async (t) => {
    const dataDir = tempDataDir('greenlight-stopping-test-');
    const started = await npmStart(t, dataDir);
    started.npm.child.kill('SIGTERM');
    assert.deepEqual(await started.npm.waitForExit(30_000), { code: 0, signal: null });
    await assertAllGone(started);
  });

  test('when Ctrl-C reaches the whole process group, then the server stops first, once, and then its embedded PostgreSQL, without an error', async (t) => {
    const dataDir = tempDataDir('greenlight-stopping-test-');
    const started = await npmStart(t, dataDir);
    process.kill(-(started.npm.child.pid as number), 'SIGINT');
    assert.deepEqual(await started.npm.waitForExit(30_000), { code: 0, signal: null });
    await assertAllGone(started);
    const messages = started.npm.logs.map((l) => l.msg);
    assert.equal(messages.filter((m) => m === 'shutting down server').length, 1);
    assert.ok(
      messages.indexOf('completing background tasks') < messages.indexOf('embedded PostgreSQL stopped'),
    );
  });
});

type Answer = { at: number; status: number; connection: string | undefined };

// One keep-alive connection sending requests back to back until the server refuses a new
// connection (the request was then never sent). Anything else that fails is a lost request.
function keepAliveClient(port: number, paths: readonly string[], stop: () => boolean) {
  const answers: Answer[] = [];
  return { answers, done: sendUntilRefused(port, paths, stop, answers) };
}

async function sendUntilRefused(
  port: number,
  paths: readonly string[],
  stop: () => boolean,
  answers: Answer[],
) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const lost: string[] = [];
  try {
    for (let i = 0; !stop(); i++) {
      const path = paths[i % paths.length] as string;
      try {
        const res = await new Promise<IncomingMessage>((resolve, reject) => {
          get({ host: '127.0.0.1', port, path, agent }, resolve).once('error', reject);
        });
        await new Promise<void>((resolve, reject) => res.resume().once('end', resolve).once('error', reject));
        answers.push({
          at: performance.now(),
          status: res.statusCode ?? 0,
          connection: res.headers.connection,
        });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ECONNREFUSED') lost.push(`${path}: ${code ?? (err as Error).message}`);
        break;
      }
    }
  } finally {
    agent.destroy();
  }
  return { answers, lost };
}

describe('shutdown under keep-alive load', () => {
  test('when SIGTERM arrives while 50 keep-alive connections send requests, then every request sent is answered and every connection ends after a Connection: close response', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-max-connections-per-ip', '0'], 60_000);
    // An answered route, the not-found handler, an authentication error, a bad parameter.
    const paths = ['/v1/healthcheck', '/v1/nope', '/v1/movies', '/v1/movies/abc'];
    let exited = false;
    void server.exited.then(() => {
      exited = true;
    });
    const clients = Array.from({ length: 50 }, () => keepAliveClient(server.port, paths, () => exited));
    // Every connection established and in use: the load of a running service, not its start.
    for (const started = Date.now(); clients.some((c) => c.answers.length < 4); await sleep(50)) {
      assert.ok(Date.now() - started < 30_000, 'every client is answered within 30 s');
    }
    const signalledAt = performance.now();
    server.child.kill('SIGTERM');
    const results = await withTimeout(Promise.all(clients.map((c) => c.done)), 20_000, 'the clients to stop');
    assert.deepEqual(await server.waitForExit(20_000), { code: 0, signal: null });

    assert.deepEqual(
      results.flatMap((r) => r.lost),
      [],
    );
    const all = results.flatMap((r) => r.answers);
    assert.ok(all.filter((a) => a.at < signalledAt).length >= 50, 'load before the signal');
    assert.ok(all.every((a) => a.status < 500));
    for (const { answers } of results) {
      // The connection's last response closed it; before that, at most the one response
      // written before the server took the signal, and none after a Connection: close.
      const afterSignal = answers.filter((a) => a.at >= signalledAt);
      assert.equal(afterSignal.at(-1)?.connection, 'close', JSON.stringify(afterSignal));
      assert.ok(afterSignal.filter((a) => a.connection !== 'close').length <= 3, JSON.stringify(afterSignal));
    }
    assert.equal(
      server.logs.find((l) => l.msg === 'grace period over: closing remaining connections'),
      undefined,
    );
  });

  test('when the server shuts down, then an open SSE stream gets a final shutdown event with a retry hint before it ends', async (t) => {
    const db = createPool({ ...testConfig(dsn).db, dsn, maxOpenConns: 1 });
    const { token } = await createUser(db, { permissions: ['movies:read'] }).finally(() => db.end());
    const server = await startServer(t, ['-db-dsn', dsn], 60_000);
    const res = await fetch(`http://127.0.0.1:${server.port}/v1/movies/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /^: stream of movie events/);

    server.child.kill('SIGTERM');
    let rest = '';
    for (;;) {
      const { done, value } = await withTimeout(reader.read(), 5_000, 'the stream to end');
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    assert.match(rest, /event: shutdown\ndata: \{"reason":"server shutting down"\}\nretry: \d+\n\n$/);
    assert.deepEqual(await server.waitForExit(20_000), { code: 0, signal: null });
  });
});
