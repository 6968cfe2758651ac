// Where the embedded PostgreSQL's binaries and cluster live: the package's own binaries and
// the data directory, or, when greenlight runs as root, copies and a cluster that the
// unprivileged `postgres` user can reach (see SHARED_DIR). Part of embedded-postgres.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from './logger.ts';

// Every refusal of the embedded PostgreSQL, from this file or embedded-postgres.ts: the CLI
// prints its message alone, as a start-up error.
export class EmbeddedPostgresError extends Error {}

export type Binaries = { postgres: string; initdb: string };
export type Account = { uid: number; gid: number };

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

export async function binaries(account: Account | undefined): Promise<Binaries> {
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
export function clusterHome(dataDir: string, account: Account | undefined, logger: Logger): string {
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
export function unprivilegedUser(): Account | undefined {
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
