// Which process stops the embedded PostgreSQL: the one that started it, the one that adopted
// it after that one was killed, or the one it was handed to by an owner that stopped while
// it still used it; any other only borrows it. Part of embedded-postgres.ts.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from './logger.ts';

// A process that has exited but was not reaped (an orphan in a container whose init does
// not reap) still answers signal 0; /proc tells it apart where there is one.
export function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return true;
  }
}

export type RunningServer = { pid: number; port: number; socketDir: string };

// A live postmaster.pid means a server already runs on this directory: reuse it, through
// its Unix socket when it has one (the file's fifth line names the socket directory).
export function runningServer(pgdata: string): RunningServer | undefined {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pid, , , port, socketDir = ''] = readFileSync(pidFile, 'utf8').split('\n');
  return isRunning(Number(pid)) ? { pid: Number(pid), port: Number(port), socketDir } : undefined;
}

// <data-dir>/postgres-owner.pid names the greenlight process that stops the server on its
// way out: the one that started it, or, when that one was killed before it could
// (SIGKILL), the next one to find the server running. A command run next to a live owner
// (`migrate version` while serving) only borrows the server.
const OWNER_FILE = 'postgres-owner.pid';

function recordedOwner(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(join(dataDir, OWNER_FILE), 'utf8'));
  } catch {
    return undefined;
  }
}

function becomeOwner(dataDir: string, pid = process.pid): void {
  writeFileSync(join(dataDir, OWNER_FILE), String(pid));
}

// <data-dir>/postgres-borrowers/<pid>: the greenlight processes using a server another one
// owns. An owner that stops while one of them still runs hands the server over rather than
// stop it under it (a restart whose new process started while the old one drained).
const BORROWERS_DIR = 'postgres-borrowers';

function liveBorrower(dataDir: string): number | undefined {
  let names: string[];
  try {
    names = readdirSync(join(dataDir, BORROWERS_DIR));
  } catch {
    return undefined;
  }
  for (const name of names) {
    const pid = Number(name);
    if (pid !== process.pid && isRunning(pid)) return pid;
    rmSync(join(dataDir, BORROWERS_DIR, name), { force: true });
  }
  return undefined;
}

// Whether the server went to a borrower, which stops it on its own way out.
function handOver(dataDir: string, logger: Logger): boolean {
  const heir = liveBorrower(dataDir);
  if (heir === undefined) return false;
  becomeOwner(dataDir, heir);
  logger.info({ pid: heir }, 'left the embedded PostgreSQL running for the greenlight process that uses it');
  return true;
}

// The stop of a server this process borrows: nothing, unless its owner handed it over.
export function borrowedServer(dataDir: string, pid: number, logger: Logger): () => Promise<void> {
  const mark = join(dataDir, BORROWERS_DIR, String(process.pid));
  mkdirSync(join(dataDir, BORROWERS_DIR), { recursive: true });
  writeFileSync(mark, '');
  const handedOver = () => recordedOwner(dataDir) === process.pid;
  let stopped = false;
  const onExit = () => {
    rmSync(mark, { force: true });
    if (handedOver() && !handOver(dataDir, logger)) signal(pid, 'SIGINT');
  };
  process.once('exit', onExit);
  return async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    rmSync(mark, { force: true });
    if (!handedOver() || handOver(dataDir, logger)) return;
    await stopPostmaster(pid);
    releaseOwnership(dataDir);
    logger.info('embedded PostgreSQL stopped');
  };
}

// The lock keeps two processes that find the same orphan at once from both adopting it.
// Without an owner file (a server started by an older greenlight) nobody adopts.
export function adoptOrphan(dataDir: string): boolean {
  const before = recordedOwner(dataDir);
  if (before === undefined || isRunning(before)) return false;
  const lock = join(dataDir, `${OWNER_FILE}.lock`);
  let fd: number;
  try {
    fd = openSync(lock, 'wx');
  } catch {
    return false;
  }
  try {
    if (recordedOwner(dataDir) !== before) return false;
    becomeOwner(dataDir);
    return true;
  } finally {
    closeSync(fd);
    rmSync(lock, { force: true });
  }
}

// Recorded before the server exists, so that no other process takes it for an orphan; a
// lock left by a process killed while adopting goes with the server it was about.
export function claimOwnership(dataDir: string): void {
  rmSync(join(dataDir, `${OWNER_FILE}.lock`), { force: true });
  becomeOwner(dataDir);
}

function releaseOwnership(dataDir: string): void {
  if (recordedOwner(dataDir) === process.pid) rmSync(join(dataDir, OWNER_FILE), { force: true });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

// SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, checkpoint, exit.
// SIGQUIT, if that takes too long, exits at once (crash recovery at the next start).
const FAST_SHUTDOWN_MS = 20_000;

async function stopPostmaster(pid: number): Promise<void> {
  signal(pid, 'SIGINT');
  const deadline = Date.now() + FAST_SHUTDOWN_MS;
  let quit = false;
  while (isRunning(pid)) {
    if (!quit && Date.now() > deadline) {
      quit = true;
      signal(pid, 'SIGQUIT');
    }
    await sleep(20);
  }
}

// The stop of a server this process owns, whether it started it, adopted it or was handed
// it: to a borrower still running if there is one, else the server stops. However
// this process ends (an error at start-up, process.exit, a signal: `serve` exits on one),
// the server goes with it. PostgreSQL does not watch its parent, so a SIGKILL leaves it
// running, for the next start to adopt through postgres-owner.pid.
export function ownedServer(dataDir: string, pid: number, logger: Logger): () => Promise<void> {
  let stopped = false;
  const onExit = () => {
    if (!stopped && !handOver(dataDir, logger)) signal(pid, 'SIGINT');
  };
  process.once('exit', onExit);
  return async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    if (handOver(dataDir, logger)) return;
    await stopPostmaster(pid);
    releaseOwnership(dataDir);
    logger.info('embedded PostgreSQL stopped');
  };
}
