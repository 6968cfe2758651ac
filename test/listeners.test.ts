// The listening ports of real `serve` processes: a port another process holds is a start-up
// error naming it and its flag (SO_REUSEPORT would otherwise let a second instance share it),
// and the connection caps hold for the instance as a whole when workers share the port.
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDatabase } from './helpers.ts';
import { freePort, type Greenlight, run, startServer, withTimeout } from './processes.ts';

const dsn = await createTestDatabase();

// Both workers listen once each has logged it; until then one would take every connection.
async function bothWorkersListening(server: Greenlight): Promise<void> {
  const listening = () => new Set(server.logs.filter((l) => l.msg === 'starting server').map((l) => l.pid));
  for (const started = Date.now(); listening().size < 2; await sleep(50)) {
    assert.ok(Date.now() - started < 60_000, `both workers listen within 60 s\n${server.stdout()}`);
  }
}

describe('a port in use', () => {
  test('when a second serve -workers 2 starts on the port the first one serves, then it exits 1 naming the port and -port, and the first keeps it', async (t) => {
    const port = await freePort();
    const flags = ['-db-dsn', dsn, '-workers', '2', '-port', String(port)];
    const first = await startServer(t, flags, 60_000);
    await bothWorkersListening(first);

    const second = await run(
      t,
      ['serve', '-host', '127.0.0.1', '-callbacks-addr=', '-grpc-addr=', ...flags],
      60_000,
    );
    assert.equal(second.code, 1, second.stdout);
    assert.match(second.stderr, /^greenlight: cannot listen on 127\.0\.0\.1:(\d+): the port is in use/);
    assert.ok(second.stderr.includes(`:${port}:`), second.stderr);
    assert.ok(second.stderr.includes('-port'), second.stderr);
    assert.equal((await fetch(`http://127.0.0.1:${port}/v1/healthcheck`)).status, 200);
  });

  test('when the callback listener address is held by another process, then serve exits 1 naming it and -callbacks-addr', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => blocker.close(resolve)));
    const { port } = blocker.address() as { port: number };
    const result = await run(
      t,
      [
        'serve',
        '-host',
        '127.0.0.1',
        '-port',
        '0',
        '-db-dsn',
        dsn,
        '-grpc-addr=',
        '-callbacks-addr',
        `127.0.0.1:${port}`,
      ],
      60_000,
    );
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /^greenlight: cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    assert.ok(result.stderr.includes(`:${port}:`), result.stderr);
    assert.ok(result.stderr.includes('-callbacks-addr'), result.stderr);
  });
});

// A connection that gets an answer to a request, or 'refused' when the server cuts it.
function answeredConnection(port: number): Promise<{ answered: boolean; close: () => void }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const close = () => socket.destroy();
    socket.on('error', () => {});
    socket.once('connect', () =>
      socket.write(`GET /v1/healthcheck HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
    );
    socket.once('data', () => resolve({ answered: true, close }));
    socket.once('close', () => resolve({ answered: false, close }));
  });
}

describe('connection caps across workers', () => {
  test('when two workers share the port with -max-connections-per-ip 20, then one address holds at most 20 connections in all and the log says so', async (t) => {
    const port = await freePort();
    const server = await startServer(
      t,
      ['-db-dsn', dsn, '-workers', '2', '-port', String(port), '-max-connections-per-ip', '20'],
      60_000,
    );
    await bothWorkersListening(server);
    const limits = server.logs.filter((l) => l.msg === 'connection limits');
    assert.equal(limits.length, 2);
    for (const line of limits) {
      assert.equal(line.max_connections_per_ip, 20);
      assert.equal(line.worker_max_connections_per_ip, 10);
      assert.equal(line.workers, 2);
    }

    // The kernel spreads one address's connections over both workers' sockets: with 60,
    // each worker gets more than its share of 10.
    const connections = await withTimeout(
      Promise.all(Array.from({ length: 60 }, () => answeredConnection(port))),
      30_000,
      'every connection to be answered or cut',
    );
    t.after(() => {
      for (const c of connections) c.close();
    });
    assert.equal(connections.filter((c) => c.answered).length, 20);
  });
});
