// Requests at the edges of HTTP/1.1, over raw sockets: protocol upgrades and CONNECT get an
// answer in the envelope (never a 101 off a WebSocket route, never silence), a request
// followed by the client's FIN is still answered, a body refused before it has all arrived
// leaves its connection open and answered, and a client dropping its body is its doing in the
// log on both APIs.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestCallbacks, startUpstream } from './callbacks-helpers.ts';
import { buildTestApp, waitFor } from './helpers.ts';

const IMPORT_MAX_BYTES = 4096;
const { app, lines, token } = await buildTestApp({ flags: ['-import-max-bytes', String(IMPORT_MAX_BYTES)] });
await app.listen({ host: '127.0.0.1', port: 0 });
const port = (app.server.address() as AddressInfo).port;

type Answer = { status: number; headers: string; body: string };

// Sends `bytes` (then a FIN with `halfClose`) and reads one response: up to its
// Content-Length, or to the close.
function exchange(to: number, bytes: string, options: { halfClose?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: to, host: '127.0.0.1' });
    let received = '';
    const timer = setTimeout(() => socket.destroy(), 5_000);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return reject(new Error(`no HTTP answer: ${JSON.stringify(received)}`));
      const headers = received.slice(0, end);
      resolve({ status: Number(headers.split(' ')[1]), headers, body: received.slice(end + 4) });
    };
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = /^content-length: (\d+)$/im.exec(received.slice(0, end));
      if (length && Buffer.byteLength(received.slice(end + 4)) >= Number(length[1])) done();
      if (Number(received.split(' ')[1]) === 101) done();
    });
    socket.on('error', () => {});
    socket.once('close', done);
    socket.write(bytes);
    if (options.halfClose) socket.end();
  });
}

function assertEnvelope(answer: Answer, status: number, error?: string) {
  assert.equal(answer.status, status, `${answer.headers}\n\n${answer.body}`);
  assert.match(answer.headers, /^content-type: application\/json/im);
  assert.match(answer.headers, /^x-request-id: [\w.:-]+$/im);
  const body = JSON.parse(answer.body);
  if (error !== undefined) assert.deepEqual(body, { error });
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const handshake = (method: string, path: string, extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n${extra}\r\n`;

describe('protocol upgrades and CONNECT', () => {
  test('when a WebSocket handshake arrives off a WebSocket route, then it is served as the plain request, never a 101', async () => {
    const health = await exchange(port, handshake('GET', '/v1/healthcheck'));
    assertEnvelope(health, 200);
    assert.equal(JSON.parse(health.body).status, 'available');
    const withKey = await exchange(
      port,
      handshake('GET', '/v1/healthcheck', `Authorization: Bearer ${token}\r\n`),
    );
    assertEnvelope(withKey, 200);
    assertEnvelope(
      await exchange(port, handshake('GET', '/v1/nowhere')),
      404,
      'the requested resource could not be found',
    );
    const post = await exchange(port, handshake('POST', '/v1/healthcheck'));
    assertEnvelope(post, 405, 'the POST method is not supported for this resource');
    const bare =
      'GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    assertEnvelope(await exchange(port, bare), 200);
  });

  test('when h2c is asked for, then the request is served as HTTP/1.1 (as Go does)', async () => {
    const h2c =
      'GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n';
    assertEnvelope(await exchange(port, h2c), 200);
    const put = h2c.replace('GET', 'PUT');
    assertEnvelope(await exchange(port, put), 405, 'the PUT method is not supported for this resource');
  });

  test('when the WebSocket route gets a real handshake, then 101 with a request id; anything less is an answer in the envelope', async () => {
    const upgraded = await exchange(port, handshake('GET', '/v1/ws', `Authorization: Bearer ${token}\r\n`));
    assert.equal(upgraded.status, 101, upgraded.headers);
    assert.match(upgraded.headers, /^x-request-id: /im);
    const noKey = `GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer ${token}\r\n\r\n`;
    assertEnvelope(await exchange(port, noKey), 426, 'this endpoint needs a WebSocket upgrade');
  });

  test('when CONNECT is sent, then 405 in the envelope, not a closed connection', async () => {
    const answer = await exchange(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assertEnvelope(answer, 405, 'the CONNECT method is not supported for this resource');
    assert.match(answer.headers, /^allow: /im);
  });
});

describe('a request followed by the client FIN', () => {
  test('when the client half-closes after its request, then the API still answers (a handler that waits included)', async () => {
    const ready = await exchange(port, 'GET /readyz HTTP/1.0\r\n\r\n', { halfClose: true });
    assert.equal(ready.status, 200, ready.headers);
    assert.equal(JSON.parse(ready.body).status, 'ready');
    const movies = await exchange(
      port,
      `GET /v1/movies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      { halfClose: true },
    );
    assertEnvelope(movies, 200);
  });

  test('when the client half-closes after its request, then the callback listener still answers', async () => {
    const { url } = await startUpstream();
    const callbacks = await startTestCallbacks(url);
    const listener = Number(new URL(callbacks.url).port);
    for (const path of ['/', '/objects', '/metrics']) {
      const answer = await exchange(listener, `GET ${path} HTTP/1.0\r\n\r\n`, { halfClose: true });
      assert.equal(answer.status, 200, `${path}: ${answer.headers}`);
    }
  });
});

// One keep-alive connection: write to it, and read its answers one after another.
async function keptConnection() {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  let received = '';
  let wrote: Error | undefined;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString();
  });
  socket.on('error', (err) => {
    wrote = err;
  });
  const next = async (what: string): Promise<Answer> => {
    const answer = await waitFor(what, () => {
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return undefined;
      const headers = received.slice(0, end);
      const length = Number(/^content-length: (\d+)$/im.exec(headers)?.[1]);
      if (Buffer.byteLength(received.slice(end + 4)) < length) return undefined;
      received = received.slice(end + 4 + length);
      return { status: Number(headers.split(' ')[1]), headers, body: '' };
    });
    return answer;
  };
  const write = async (bytes: string) => {
    if (!socket.write(bytes)) await once(socket, 'drain');
  };
  return { socket, next, write, error: () => wrote };
}

describe('a body refused before it has all arrived', () => {
  test('when a declared body is too large, then the refusal comes at once and the connection stays open while the client sends the rest', async () => {
    const declared = 2 * 1024 * 1024;
    // The book answers a body over its limit with 400, as Go's readJSON does.
    const routes = [
      ['/api/v1/auth/login', 413],
      ['/v1/tokens/authentication', 400],
      ['/v1/movies/import', 413],
    ] as const;
    for (const [path, status] of routes) {
      const client = await keptConnection();
      const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${declared}\r\n\r\n`;
      const first = 64 * 1024;
      await client.write(head + 'x'.repeat(first));
      const refused = await client.next(`${path}: its refusal`);
      assert.equal(refused.status, status, `${path}: ${refused.headers}`);
      assert.doesNotMatch(refused.headers, /^connection: close/im, path);
      await client.write('x'.repeat(declared - first));
      await client.write('GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal((await client.next(`${path}: the next answer`)).status, 200, path);
      assert.equal(client.error(), undefined, `${path}: the client could send all of it`);
      client.socket.destroy();
    }
  });

  test('when a streamed body passes its limit part-way, then the rest is discarded and the connection serves the next request', async () => {
    const client = await keptConnection();
    const chunk = (text: string) => `${text.length.toString(16)}\r\n${text}\r\n`;
    await client.write(
      `POST /v1/movies/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        chunk('x'.repeat(2 * IMPORT_MAX_BYTES)),
    );
    assert.equal((await client.next('the 413')).status, 413);
    for (let i = 0; i < 64; i++) await client.write(chunk('x'.repeat(16 * 1024)));
    await client.write('0\r\n\r\nGET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await client.next('the next answer')).status, 200);
    assert.equal(client.error(), undefined);
    client.socket.destroy();
  });
  test('when the client asked to close the connection, then the refusal still reaches it, after the rest it sends, without a reset', async () => {
    const declared = 6 * 1024 * 1024;
    for (const [version, connection] of [
      ['HTTP/1.1', 'Connection: close\r\n'],
      ['HTTP/1.0', ''],
    ] as const) {
      for (const [path, status] of [
        ['/api/v1/auth/login', 413],
        ['/v1/movies/import', 413],
        ['/v1/movies', 400],
      ] as const) {
        const what = `${version} ${path}`;
        const socket = connect({ port, host: '127.0.0.1' });
        await once(socket, 'connect');
        let received = '';
        let failed: Error | undefined;
        socket.on('data', (chunk: Buffer) => {
          received += chunk.toString();
        });
        socket.on('error', (err) => {
          failed = err;
        });
        const ended = once(socket, 'close');
        const write = async (bytes: string) => {
          if (!socket.write(bytes)) await once(socket, 'drain');
        };
        await write(
          `POST ${path} ${version}\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${connection}Content-Length: ${declared}\r\n\r\n`,
        );
        for (let sent = 0; sent < declared && !failed; sent += 64 * 1024) await write('x'.repeat(64 * 1024));
        await ended;
        assert.equal(failed, undefined, `${what}: the client could send all of it`);
        assert.equal(Number(received.split(' ')[1]), status, `${what}: ${received.slice(0, 400)}`);
      }
    }
  });
});

describe('a client that drops its body', () => {
  test('when a body is cut off on the products auth routes, then it is logged at info as the client’s doing, like the book’s routes', async () => {
    for (const path of ['/api/v1/auth/login', '/v1/tokens/authentication']) {
      const before = lines.length;
      const socket = connect({ port, host: '127.0.0.1' });
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"email": "a@b.c", `);
      await sleep(100);
      socket.destroy();
      const aborted = await waitFor(path, () =>
        lines.slice(before).find((l) => l.msg === 'client aborted its body'),
      );
      assert.equal(aborted.level, 'info');
      assert.deepEqual(
        lines.slice(before).filter((l) => l.level === 'error'),
        [],
        `${path}: nothing at error level`,
      );
    }
  });
});
