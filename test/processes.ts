// Spawned `node bin/greenlight.js` processes for tests: parsed JSON logs, bounded waits, and
// nothing left running after a test or a file.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LogLine } from './helpers.ts';

export { freePort } from './ports.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// A new directory for an embedded PostgreSQL that a test starts; the caller removes it.
export function tempDataDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // the 'postgres' user must reach it when the tests run as root
  return dir;
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export type Greenlight = {
  child: ChildProcess;
  logs: LogLine[];
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Exit>;
  waitForLog: (msg: string, timeoutMs?: number) => Promise<LogLine>;
  waitForExit: (timeoutMs: number) => Promise<Exit>;
};

const running = new Set<Greenlight>();

export async function killAll(): Promise<void> {
  for (const proc of running) await kill(proc);
}

export function isAlive(proc: Greenlight): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

export async function kill(proc: Greenlight): Promise<void> {
  if (isAlive(proc)) proc.child.kill('SIGKILL');
  await withTimeout(proc.exited, 5_000, 'a killed process to exit').catch(() => {});
  running.delete(proc);
}

// Safety net: nothing outlives the file, whatever a test did.
after(killAll);

// Settings come only from the flags we pass: no GREENLIGHT_* variable leaks in.
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GREENLIGHT_')));
}

// Spawned for test `t` and killed when `t` ends if still alive (tests may run concurrently).
// `cwd` is the checkout it runs from; `env` adds variables (a test switch) to the clean ones.
export function greenlight(
  t: TestContext,
  args: string[],
  cwd = ROOT,
  env: NodeJS.ProcessEnv = {},
): Greenlight {
  return spawnLogged(t, process.execPath, ['bin/greenlight.js', ...args], { cwd, env });
}

// Any command that runs greenlight (`npm start`), its JSON log lines parsed from stdout.
// `detached`: in a process group of its own, which the test may signal as a terminal does.
export function spawnLogged(
  t: TestContext,
  command: string,
  args: string[],
  {
    cwd = ROOT,
    detached = false,
    env = {},
  }: { cwd?: string; detached?: boolean; env?: NodeJS.ProcessEnv } = {},
): Greenlight {
  const child = spawn(command, args, {
    cwd,
    detached,
    env: { ...cleanEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
    for (const wake of waiters) wake();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => {
      resolve({ code, signal });
      for (const wake of waiters) wake();
    });
  });
  const proc: Greenlight = {
    child,
    logs,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForLog: (msg, timeoutMs = 10_000) => {
      let wake = () => {};
      const found = new Promise<LogLine>((resolve, reject) => {
        wake = () => {
          const line = logs.find((l) => l.msg === msg);
          if (line) resolve(line);
          else if (!isAlive(proc)) {
            reject(
              new Error(`process exited before logging "${msg}"\nstdout:\n${stdout}\nstderr:\n${stderr}`),
            );
          }
        };
        waiters.add(wake);
        wake();
      });
      return withTimeout(
        found,
        timeoutMs,
        `log "${msg}"\nstdout so far:\n${stdout}\nstderr so far:\n${stderr}`,
      ).finally(() => waiters.delete(wake));
    },
    waitForExit: (timeoutMs) => withTimeout(exited, timeoutMs, `the process to exit\nstdout:\n${stdout}`),
  };
  running.add(proc);
  t.after(() => kill(proc));
  return proc;
}

// How long a process may take to start serving or to finish a command. A start takes about a
// second on an idle machine, but many times that when files run side by side on a loaded one;
// the bound only matters for a process that hangs, since one that exits fails the wait at once.
const START_TIMEOUT_MS = 60_000;

// A command that is expected to finish by itself.
export async function run(t: TestContext, args: string[], timeoutMs = START_TIMEOUT_MS) {
  const proc = greenlight(t, args);
  const exit = await proc.waitForExit(timeoutMs);
  return { ...exit, stdout: proc.stdout(), stderr: proc.stderr() };
}

export const SERVE_FLAGS = [
  '-port',
  '0',
  '-host',
  '127.0.0.1',
  '-env',
  'development',
  '-limiter-enabled=false',
  // Tests run servers side by side: none takes the callback listener's fixed port.
  '-callbacks-addr=',
  // nor the gRPC listener's
  '-grpc-addr=',
];

export async function startServer(
  t: TestContext,
  flags: string[],
  timeoutMs = START_TIMEOUT_MS,
  cwd = ROOT,
  env: NodeJS.ProcessEnv = {},
): Promise<Greenlight & { port: number }> {
  const proc = greenlight(t, ['serve', ...SERVE_FLAGS, ...flags], cwd, env);
  const line = await proc.waitForLog('starting server', timeoutMs);
  const port = Number(String(line.addr).split(':').pop());
  assert.ok(port > 0, `no port in ${JSON.stringify(line)}`);
  return { ...proc, port };
}
