// A real redis-server for tests (installed by .ci/run), on a free loopback port, with no
// persistence. `stop()` kills it like a crash; `start()` brings it back on the same port.
// The benchmark uses it too.
import { type ChildProcess, spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { after } from 'node:test';
import { freePort } from './ports.ts';

export type TestRedis = {
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
};

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.setTimeout(500);
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

// A redis-server stopped after the test file's tests.
export async function startRedisServer(): Promise<TestRedis> {
  const redis = await spawnRedisServer();
  after(() => redis.stop());
  return redis;
}

// A redis-server whose caller stops it (the benchmark).
export async function spawnRedisServer(): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const redis: TestRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      child = spawn(
        'redis-server',
        ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'],
        { stdio: 'ignore' },
      );
      const deadline = Date.now() + 10_000;
      while (!(await answersPing(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    },
  };
  await redis.start();
  return redis;
}
