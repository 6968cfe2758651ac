// A real rabbitmq-server for tests (Debian's package, installed by .ci/run), on free loopback
// ports, its data in a directory of its own. `stop()` kills it like a crash (SIGKILL to its
// process group); `start()` brings it back on the same ports with the same data, so durable
// queues and persistent messages survive as they would a real broker restart.
// Run as root (as here), it runs as the package's `rabbitmq` user, which must own its files.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { Connection } from 'rabbitmq-client';
import { freePort } from './ports.ts';

const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
// Erlang's boot, Mnesia's and the broker's own: about ten seconds on an idle machine.
const START_TIMEOUT_MS = 90_000;

export type TestRabbitmq = {
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
};

// The uid and gid to run as: the `rabbitmq` user's when we are root (the broker refuses
// nothing as root, but its files must not end up root's), ours otherwise.
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'rabbitmq']).toString()));
  return { uid: uid as number, gid: gid as number };
}

async function answers(url: string): Promise<boolean> {
  const connection = new Connection({ url, retryLow: 50, retryHigh: 50, connectionTimeout: 1000 });
  connection.on('error', () => {});
  try {
    await connection.onConnect(1000);
    return true;
  } catch {
    return false;
  } finally {
    // Not awaited: closing a connection that never opened does not resolve.
    void connection.close().catch(() => {});
  }
}

// A rabbitmq-server stopped (and its files removed) after the test file's tests.
export async function startRabbitmqServer(): Promise<TestRabbitmq & { remove(): Promise<void> }> {
  const rabbit = await spawnRabbitmqServer();
  after(() => rabbit.remove());
  return rabbit;
}

// Whether Debian's rabbitmq-server is installed (the benchmark skips A1 without it).
export const hasRabbitmqServer = (): boolean => existsSync(SERVER);

// A rabbitmq-server whose caller stops it (the benchmark).
export async function spawnRabbitmqServer(): Promise<TestRabbitmq & { remove(): Promise<void> }> {
  const [port, distPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'greenlight-rabbitmq-'));
  const user = runAs();
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  // The Erlang distribution's cookie: rabbitmqctl (with the same environment) would need it.
  writeFileSync(join(dir, '.erlang.cookie'), `greenlight${port}${distPort}`, { mode: 0o400 });
  if (user) {
    for (const file of ['', 'enabled_plugins', '.erlang.cookie'])
      chownSync(join(dir, file), user.uid, user.gid);
  }
  const env = {
    PATH: '/usr/sbin:/usr/bin:/bin',
    HOME: dir,
    LANG: 'C.UTF-8',
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_FEATURE_FLAGS_FILE: join(dir, 'feature_flags'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_NODENAME: `greenlight-test-${port}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const rabbit = {
    url,
    port,
    async start() {
      child = spawn(SERVER, [], { env, cwd: dir, detached: true, stdio: 'ignore', ...user });
      const started = child;
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!(await answers(url))) {
        if (started.exitCode !== null)
          throw new Error(`rabbitmq-server exited (${started.exitCode}); see ${dir}/log`);
        if (Date.now() > deadline) throw new Error(`rabbitmq-server did not answer on port ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running?.pid || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      // The script, the Erlang VM and its helpers share the process group the spawn made.
      process.kill(-running.pid, 'SIGKILL');
      await exited;
      // The node's name stays registered with epmd until the VM's socket closes.
      await new Promise((resolve) => setTimeout(resolve, 200));
    },
    async remove() {
      await rabbit.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await rabbit.start();
  return rabbit;
}
