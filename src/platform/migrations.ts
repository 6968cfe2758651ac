// Schema migrations compatible with golang-migrate: the same file names
// (000001_name.up.sql / .down.sql), the same one-row `schema_migrations (version, dirty)`
// table and the same advisory lock id, so either tool can manage a database.
// Unlike golang-migrate we run each file in a transaction together with the version
// update: a failing file leaves the schema as it was, not half-applied and dirty.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export class MigrationError extends Error {}

export type Migration = Readonly<{ version: number; name: string; up: string; down: string }>;
export type SchemaVersion = Readonly<{ version: number | null; dirty: boolean }>;

const FILE_PATTERN = /^(\d+)_(.+)\.(up|down)\.sql$/;

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const byVersion = new Map<number, { name: string; up?: string; down?: string }>();
  for (const file of readdirSync(dir)) {
    const match = FILE_PATTERN.exec(file);
    if (!match) continue;
    const [, digits, name, direction] = match as unknown as [string, string, string, 'up' | 'down'];
    const version = Number(digits);
    const entry = byVersion.get(version) ?? { name };
    if (entry.name !== name)
      throw new MigrationError(`two migrations share version ${version}: ${entry.name}, ${name}`);
    entry[direction] = readFileSync(join(dir, file), 'utf8');
    byVersion.set(version, entry);
  }
  return [...byVersion.entries()]
    .sort(([a], [b]) => a - b)
    .map(([version, entry]) => {
      if (entry.up === undefined)
        throw new MigrationError(`migration ${version}_${entry.name} has no .up.sql file`);
      return { version, name: entry.name, up: entry.up, down: entry.down ?? '' };
    });
}

// golang-migrate's postgres driver: crc32(schema \0 table \0 database) * salt, as uint32.
const ADVISORY_LOCK_SALT = 1486364155;
export function advisoryLockId(database: string, schema = 'public', table = 'schema_migrations'): number {
  const sum = crc32(Buffer.from([schema, table, database].join('\x00')));
  return Math.imul(sum, ADVISORY_LOCK_SALT) >>> 0;
}

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`;
const SELECT_VERSION = 'SELECT version, dirty FROM schema_migrations LIMIT 1';

export async function readVersion(client: Pick<pg.ClientBase, 'query'>): Promise<SchemaVersion> {
  const { rows } = await client.query<{ version: string; dirty: boolean }>(SELECT_VERSION);
  const row = rows[0];
  return row ? { version: Number(row.version), dirty: row.dirty } : { version: null, dirty: false };
}

async function writeVersion(client: pg.ClientBase, version: number | null, dirty = false): Promise<void> {
  await client.query('TRUNCATE schema_migrations');
  if (version !== null) {
    await client.query('INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)', [version, dirty]);
  }
}

// What readiness reports about the schema: 'ok', or why this code cannot use it yet.
export function schemaState(current: SchemaVersion, migrations: readonly Migration[]): string {
  const pad = (version: number | null) => String(version ?? 0).padStart(6, '0');
  if (current.dirty) return `dirty: ${pad(current.version)}`;
  const pending = migrations.filter((m) => current.version === null || m.version > current.version);
  if (pending.length > 0) return `pending: ${pending.map((m) => pad(m.version)).join(', ')}`;
  if (current.version !== null && !migrations.some((m) => m.version === current.version)) {
    return `unknown version: ${pad(current.version)}`;
  }
  return 'ok';
}

export type MigrationStep = Readonly<{ version: number; name: string; direction: 'up' | 'down' }>;

export class Migrator {
  readonly #dsn: string;
  readonly #migrations: Migration[];
  readonly #log: (step: MigrationStep) => void;

  constructor(dsn: string, options: { dir?: string; onStep?: (step: MigrationStep) => void } = {}) {
    this.#dsn = dsn;
    this.#migrations = readMigrations(options.dir);
    this.#log = options.onStep ?? (() => {});
  }

  get latest(): number | null {
    return this.#migrations.at(-1)?.version ?? null;
  }

  // Runs `work` on one connection holding the migration lock, so concurrent migrators
  // (two servers starting at once, or this and golang-migrate) apply each file once.
  async #locked<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: this.#dsn, application_name: 'greenlight-migrate' });
    await client.connect();
    const lockId = advisoryLockId(client.database ?? '');
    try {
      await client.query('SELECT pg_advisory_lock($1)', [lockId]);
      await client.query(CREATE_TABLE);
      return await work(client);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [lockId]).catch(() => {});
      await client.end();
    }
  }

  version(): Promise<SchemaVersion> {
    return this.#locked(readVersion);
  }

  // A version no file has would take every instance out of readiness ("unknown version"), so
  // it is refused as goto refuses it; -1 is "no migration", as in golang-migrate.
  force(version: number): Promise<void> {
    if (version >= 0 && !this.#migrations.some((m) => m.version === version)) {
      return Promise.reject(new MigrationError(`no migration file has version ${version}`));
    }
    return this.#locked((client) => writeVersion(client, version < 0 ? null : version));
  }

  // Applies every pending migration; returns how many were applied.
  up(): Promise<number> {
    return this.goto(this.latest);
  }

  down(steps: number | 'all'): Promise<number> {
    return this.#locked(async (client) => {
      const current = await this.#cleanVersion(client);
      const applied = this.#migrations.filter((m) => current !== null && m.version <= current);
      const count = steps === 'all' ? applied.length : Math.min(steps, applied.length);
      const target =
        applied.length - count > 0 ? (applied[applied.length - count - 1] as Migration).version : null;
      return this.#moveTo(client, current, target);
    });
  }

  goto(target: number | null): Promise<number> {
    if (target !== null && !this.#migrations.some((m) => m.version === target)) {
      return Promise.reject(new MigrationError(`no migration file has version ${target}`));
    }
    return this.#locked(async (client) => this.#moveTo(client, await this.#cleanVersion(client), target));
  }

  async #cleanVersion(client: pg.Client): Promise<number | null> {
    const { version, dirty } = await readVersion(client);
    if (dirty) {
      throw new MigrationError(
        `database is dirty at version ${version}: a migration failed part-way. Repair the schema by hand, then run \`greenlight migrate force VERSION\` with the version it really is at`,
      );
    }
    if (version !== null && !this.#migrations.some((m) => m.version === version)) {
      throw new MigrationError(
        `database is at version ${version}, which no migration file here has (newer code?)`,
      );
    }
    return version;
  }

  async #moveTo(client: pg.Client, current: number | null, target: number | null): Promise<number> {
    const cur = current ?? -1;
    const tgt = target ?? -1;
    const steps =
      tgt >= cur
        ? this.#migrations
            .filter((m) => m.version > cur && m.version <= tgt)
            .map((m) => ({ m, direction: 'up' as const }))
        : this.#migrations
            .filter((m) => m.version <= cur && m.version > tgt)
            .reverse()
            .map((m) => ({ m, direction: 'down' as const }));
    for (const { m, direction } of steps) {
      const index = this.#migrations.indexOf(m);
      const after = direction === 'up' ? m.version : (this.#migrations[index - 1]?.version ?? null);
      try {
        await client.query('BEGIN');
        await client.query(direction === 'up' ? m.up : m.down);
        await writeVersion(client, after);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw new MigrationError(
          `migration ${String(m.version).padStart(6, '0')}_${m.name}.${direction}.sql failed and was rolled back: ${(err as Error).message}`,
        );
      }
      this.#log({ version: m.version, name: m.name, direction });
    }
    return steps.length;
  }
}

// `migrate create NAME`: the next sequential pair of files, six digits like `migrate -seq`.
export function createMigrationFiles(name: string, dir = MIGRATIONS_DIR): string[] {
  if (!/^[a-z0-9_]+$/.test(name))
    throw new MigrationError('migration name must be lower-case letters, digits and _');
  const next = (readMigrations(dir).at(-1)?.version ?? 0) + 1;
  const base = `${String(next).padStart(6, '0')}_${name}`;
  const files = [`${base}.up.sql`, `${base}.down.sql`].map((f) => join(dir, f));
  for (const file of files) writeFileSync(file, '', { flag: 'wx' });
  return files;
}
