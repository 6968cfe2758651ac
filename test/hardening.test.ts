// What an attacker or a careless client sends, over real sockets: malformed HTTP, bad
// Content-Types, NUL characters, oversized values, slow and numerous connections, and
// requests in flight at shutdown. Every answer is a 4xx in the API's envelope with a request
// id, and no request that reached the server goes unanswered.
import assert from 'node:assert/strict';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket, { WebSocketServer } from 'ws';
import { effectiveMaxConnections, FD_RESERVE, openFilesLimit } from '../src/platform/connection-caps.ts';
import { GreenlightServer, QUIET_MS } from '../src/platform/http-server.ts';
import { buildTestApp, createTestDatabase } from './helpers.ts';
import { freePort, isAlive, startServer, withTimeout } from './processes.ts';

const dsn = await createTestDatabase();
const { api, app, lines } = await buildTestApp({ dsn });

type RawAnswer = { status: number; headers: string; body: string };

// Sends `bytes` on a new connection from `localAddress` and reads until the server closes it
// (or `timeoutMs`).
function raw(port: number, bytes: string | Buffer, timeoutMs = 5_000, localAddress = '127.0.0.1') {
  return new Promise<RawAnswer>((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
    });
    socket.on('error', () => {});
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return reject(new Error(`no HTTP answer: ${JSON.stringify(received)}`));
      const headers = received.slice(0, end);
      let body = received.slice(end + 4);
      if (/transfer-encoding: chunked/i.test(headers)) body = body.split('\r\n')[1] ?? '';
      resolve({ status: Number(headers.split(' ')[1]), headers, body });
    });
    socket.write(bytes);
  });
}

function assertEnvelope(answer: RawAnswer, status: number, error: string) {
  assert.equal(answer.status, status, `${answer.headers}\n\n${answer.body}`);
  assert.deepEqual(JSON.parse(answer.body), { error });
  assert.match(answer.headers, /^x-request-id: [\w.:-]+$/im);
  assert.match(answer.headers, /^content-type: application\/json/im);
}

describe('errors answered below the application, over a real socket', () => {
  test('when HTTP is malformed, headers are oversized, Host is missing or Expect is unknown, then each is a 4xx in the envelope with a request id', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-read-header-timeout', '1s']);
    const port = server.port;
    assertEnvelope(await raw(port, 'GARBAGE\r\n\r\n'), 400, 'the request is not valid HTTP');
    assertEnvelope(
      await raw(port, `GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
      431,
      'the request headers are too large',
    );
    assertEnvelope(
      await raw(port, 'GET /v1/healthcheck HTTP/1.1\r\nConnection: close\r\n\r\n'),
      400,
      'missing required Host header',
    );
    assertEnvelope(
      await raw(port, 'GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n'),
      417,
      'the Expect header is not supported (only 100-continue is)',
    );
    const started = Date.now();
    assertEnvelope(
      await raw(port, 'GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n', 10_000),
      408,
      'the request took too long to arrive',
    );
    const waited = Date.now() - started;
    assert.ok(waited < 3_500, `a slow header was cut after ${waited} ms with -read-header-timeout 1s`);
    assert.equal(
      server.logs.filter((l) => l.level === 'error').length,
      0,
      JSON.stringify(server.logs.filter((l) => l.level === 'error')),
    );
  });
});

describe('the products API keeps its own envelope for the same mistakes', () => {
  test('when a path under /api/v1 is undecodable or its id overlong, then 404 in {code, message}', async () => {
    for (const url of ['/api/v1/products/%zz', `/api/v1/products/${'1'.repeat(5000)}`]) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, 404, url);
      assert.deepEqual(res.json(), { code: 404, message: '404 page not found' });
      assert.ok(res.headers['x-request-id']);
    }
  });

  test('when a framework client error happens under /api/v1, then it keeps its 4xx status in {code, message}', async () => {
    const res = await app.inject({ method: 'QUERY' as 'GET', url: '/api/v1/products', payload: '{}' });
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().code, 400);
    assert.equal(lines.filter((l) => l.level === 'error').length, 0);
  });

  test('when a body is nested 3,000 levels deep, then it is a client error, not a stack overflow', async () => {
    for (const payload of [
      `${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}`,
      '['.repeat(3000) + ']'.repeat(3000),
    ]) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode} ${res.body}`);
      assert.equal(res.json().code, res.statusCode);
    }
    assert.equal(lines.filter((l) => l.level === 'error').length, 0);
  });
});

describe('the callback listener keeps the same rules', () => {
  test('when it gets malformed HTTP, slow headers or too many connections from one address, then it answers like the API', async (t) => {
    const port = await freePort();
    const server = await startServer(t, [
      '-db-dsn',
      dsn,
      '-callbacks-addr',
      `127.0.0.1:${port}`,
      '-read-header-timeout',
      '1s',
      '-max-connections-per-ip',
      '5',
    ]);
    await server.waitForLog('callback service started');
    assertEnvelope(await raw(port, 'GARBAGE\r\n\r\n'), 400, 'the request is not valid HTTP');
    assertEnvelope(
      await raw(port, 'POST /callback HTTP/1.1\r\nHost: x\r\n', 10_000),
      408,
      'the request took too long to arrive',
    );
    const hog = await slowConnections(port, 12, '127.0.0.3');
    t.after(() => {
      for (const s of hog) s.destroy();
    });
    assert.equal(openCount(hog), 5);
    const res = await fetch(`http://127.0.0.1:${port}/callback`, {
      method: 'POST',
      body: JSON.stringify({ object_ids: [] }),
    });
    assert.equal(res.status, 200);
  });
});

describe('client mistakes that used to be 500s', () => {
  test('when Content-Type is malformed, then the body is still read as the book reads it (whatever the type)', async () => {
    for (const contentType of ['text', '', 'a/b/c;;;', 'application/json, text/html']) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/users',
        headers: { 'content-type': contentType },
        payload: '{"name": "Type Tester"}',
      });
      assert.equal(res.statusCode, 422, `${contentType}: ${res.body}`);
      assert.deepEqual(res.json(), { error: { email: 'must be provided', password: 'must be provided' } });
      assert.ok(res.headers['x-request-id']);
    }
  });

  test('when a query holds a NUL character, then 422 names the field', async () => {
    for (const [query, field] of [
      ['title=%00', 'title'],
      ['genres=drama,%00', 'genres'],
    ] as const) {
      const res = await api(`/v1/movies?${query}`);
      assert.equal(res.statusCode, 422, res.body);
      assert.deepEqual(res.json(), { error: { [field]: 'must not contain the NUL character' } });
    }
  });

  test('when a JSON string holds a NUL character, then 422 names the field and nothing is stored', async () => {
    const movie = { title: 'Nul', year: 2001, runtime: '90 mins', genres: ['drama'] };
    const cases = [
      ['/v1/movies', { ...movie, title: 'a\u0000b' }, 'title'],
      ['/v1/movies', { ...movie, genres: ['dr\u0000ama'] }, 'genres'],
    ] as const;
    for (const [url, payload, field] of cases) {
      const res = await api({ method: 'POST', url, payload });
      assert.equal(res.statusCode, 422, res.body);
      assert.equal(res.json().error[field], 'must not contain the NUL character');
    }
    const user = await app.inject({
      method: 'POST',
      url: '/v1/users',
      payload: { name: 'Nul\u0000Name', email: 'nul@example.com', password: 'pa55word' },
    });
    assert.equal(user.statusCode, 422, user.body);
    assert.deepEqual(user.json(), { error: { name: 'must not contain the NUL character' } });
    const list = await api('/v1/movies?title=nul');
    assert.deepEqual(list.json().movies, []);
  });

  test('when a genre is longer than 500 bytes, then 422 (PostgreSQL could not index it)', async () => {
    const res = await api({
      method: 'POST',
      url: '/v1/movies',
      payload: { title: 'Long Genre', year: 2001, runtime: '90 mins', genres: ['g'.repeat(3000)] },
    });
    assert.equal(res.statusCode, 422, res.body);
    assert.deepEqual(res.json(), { error: { genres: 'must not contain a genre longer than 500 bytes' } });
    const ok = await api({
      method: 'POST',
      url: '/v1/movies',
      payload: { title: 'Long Genre', year: 2001, runtime: '90 mins', genres: ['g'.repeat(500)] },
    });
    assert.equal(ok.statusCode, 201, ok.body);
  });

  test('when a path parameter is over 4,096 characters, then 404 in the envelope, logged as a request, not an error', async () => {
    const res = await api(`/v1/movies/${'1'.repeat(5000)}`);
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'the requested resource could not be found' });
    assert.ok(res.headers['x-request-id']);
    assert.equal(lines.filter((l) => l.level === 'error').length, 0);
  });
});

// Opens `count` connections from `localAddress` that send half a request and stay open.
async function slowConnections(port: number, count: number, localAddress: string): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    socket.on('error', () => {});
    socket.write('GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n');
    sockets.push(socket);
  }
  await sleep(300);
  return sockets;
}

function openCount(sockets: Socket[]): number {
  return sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
}

describe('connection limits', () => {
  test('when one address opens more connections than its cap, then the rest are cut at once and another address is still served', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-max-connections-per-ip', '5']);
    const hog = await slowConnections(server.port, 20, '127.0.0.2');
    t.after(() => {
      for (const s of hog) s.destroy();
    });
    assert.equal(openCount(hog), 5);
    const res = await fetch(`http://127.0.0.1:${server.port}/v1/healthcheck`);
    assert.equal(res.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    assert.match(metrics, /greenlight_connections_refused_total\{reason="per_address"\} 15/);
    const limits = await server.waitForLog('connection limits');
    assert.equal(limits.max_connections_per_ip, 5);
    assert.ok(Number(limits.max_connections) > 0);
  });
});

// 50 clients, each sending requests one after another on its own keep-alive connection.
function keepAliveLoad(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 50 });
  const outcome = { answered: 0, refused: 0, lost: [] as string[] };
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = httpRequest({ port, host: '127.0.0.1', path: '/v1/healthcheck', agent }, (res) => {
        res.resume();
        res.on('end', () => {
          outcome.answered++;
          resolve();
        });
        res.on('error', (err) => {
          outcome.lost.push(err.message);
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A refused connection is unambiguous: the request was never sent.
        if (err.code === 'ECONNREFUSED') outcome.refused++;
        else outcome.lost.push(err.code ?? err.message);
        resolve();
      });
      req.end();
    });
  const clients = Array.from({ length: 50 }, async () => {
    while (running) await one();
  });
  return {
    outcome,
    stop: async () => {
      running = false;
      await Promise.all(clients);
      agent.destroy();
    },
  };
}

describe('shutdown under load', () => {
  test('when SIGTERM arrives under 50-connection keep-alive load, then every request sent gets its answer', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn]);
    const load = keepAliveLoad(server.port);
    while (load.outcome.answered < 2_000) await sleep(20);
    server.child.kill('SIGTERM');
    const exit = await server.waitForExit(10_000);
    await load.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.deepEqual(load.outcome.lost, [], `${load.outcome.lost.length} requests got no answer`);
    assert.ok(load.outcome.refused > 0, 'the clients went on until the listener was closed');
  });

  test('when idle and slow, request-less connections are open at SIGTERM, then the process exits at once', async (t) => {
    const server = await startServer(t, ['-db-dsn', dsn, '-shutdown-timeout', '30s']);
    const slow = await slowConnections(server.port, 3, '127.0.0.1');
    const agent = new Agent({ keepAlive: true });
    const idle = await new Promise<number>((resolve) => {
      httpRequest({ port: server.port, host: '127.0.0.1', path: '/v1/healthcheck', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).end();
    });
    assert.equal(idle, 200);
    const started = Date.now();
    server.child.kill('SIGTERM');
    const exit = await withTimeout(server.exited, 5_000, 'the process to exit');
    const took = Date.now() - started;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(took < 3_000, `exit took ${took} ms`);
    assert.ok(!isAlive(server));
    assert.equal(openCount(slow), 0);
    agent.destroy();
  });
});

describe('switched connections at shutdown', () => {
  // A bare GreenlightServer with a WebSocket path, whose handshakes `upgrade` answers.
  async function serverWithWebSockets(
    t: TestContext,
    upgrade: (req: IncomingMessage, socket: Socket) => void,
  ) {
    const server = new GreenlightServer((_req, res) => res.end(), {
      headerTimeoutMs: 5_000,
      requestTimeoutMs: 5_000,
      idleTimeoutMs: 5_000,
      maxConnections: 100,
      maxConnectionsPerProcess: false,
      maxConnectionsPerAddress: 0,
      workers: 1,
      isProxy: () => false,
    });
    server.webSocketPaths.add('/ws');
    server.on('upgrade', upgrade);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    return server;
  }

  // A WebSocket, upgraded `ageMs` ago, as the WebSocket plugin upgrades it.
  async function webSocketOn(t: TestContext, ageMs: number) {
    const wss = new WebSocketServer({ noServer: true });
    const server = await serverWithWebSockets(t, (req, socket) =>
      wss.handleUpgrade(req, socket, Buffer.alloc(0), () => server.switchedProtocols(socket)),
    );
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`);
    const closed = new Promise<number>((resolve) => client.on('close', resolve));
    await new Promise((resolve) => client.once('open', resolve));
    await sleep(ageMs);
    return { server, client, closed };
  }

  test('when the drain finds a WebSocket open longer than a quiet connection may stay, then it leaves it to its close handshake', async (t) => {
    const { server, client, closed } = await webSocketOn(t, QUIET_MS + 100);
    server.drain();
    await sleep(QUIET_MS + 100);
    assert.equal(client.readyState, WebSocket.OPEN);
    client.close(1000);
    assert.equal(await closed, 1000);
  });

  test('when a handshake was refused and its client keeps the connection, then the drain closes it as a quiet one', async (t) => {
    const server = await serverWithWebSockets(t, (_req, socket) =>
      socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n'),
    );
    const client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
    const closed = new Promise((resolve) => client.on('close', resolve));
    client.write(
      'GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await new Promise((resolve) => client.once('data', resolve));
    server.drain();
    await withTimeout(closed, QUIET_MS + 1_000, 'the refused connection to close');
  });

  test('when the grace period ends, then closeAllConnections cuts WebSocket connections too', async (t) => {
    const { server, closed } = await webSocketOn(t, 0);
    server.closeAllConnections();
    assert.equal(await withTimeout(closed, 2_000, 'the WebSocket to be cut'), 1006);
  });
});

describe('open-files headroom', () => {
  test('when -max-connections is 0, then it is the open-files limit less the reserve', () => {
    assert.equal(effectiveMaxConnections(0, 20_000), 20_000 - FD_RESERVE);
    assert.equal(effectiveMaxConnections(0, 100), 64);
    assert.equal(effectiveMaxConnections(500, 20_000), 500);
    const limit = openFilesLimit();
    assert.ok(limit === undefined || limit > 0);
  });
});
