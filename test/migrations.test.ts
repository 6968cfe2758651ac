// Migrations: golang-migrate compatibility (file names, schema_migrations, advisory lock id),
// the book's schema, transactional files, the dirty flag, concurrency and the CLI.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { crc32 as zlibCrc32 } from 'node:zlib';
import pg from 'pg';
import {
  advisoryLockId,
  createMigrationFiles,
  MIGRATIONS_DIR,
  MigrationError,
  Migrator,
  readMigrations,
} from '../src/platform/migrations.ts';
import { createTestDatabase } from './helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BROKEN_DIR = fileURLToPath(new URL('./fixtures/migrations-broken', import.meta.url));

// The repository's migrations. The first three are the book's movies files; later ones
// (users, tokens, permissions, ...) are counted, not hard-coded, so new files need no edit here.
const MIGRATIONS = readMigrations();
const COUNT = MIGRATIONS.length;
const LATEST = MIGRATIONS.at(-1)?.version ?? 0;
const MOVIE_MIGRATIONS = ['create_movies_table', 'add_movies_check_constraints', 'add_movies_indexes'];
const pad = (version: number) => String(version).padStart(6, '0');
const byNumber = (a: number, b: number) => a - b;

// ---------------------------------------------------------------------------------------------
// helpers

async function withClient<T>(dsn: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: dsn });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function query<R extends pg.QueryResultRow = Record<string, unknown>>(
  dsn: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  return withClient(dsn, async (c) => (await c.query<R>(sql, params)).rows);
}

async function tableExists(dsn: string, table: string): Promise<boolean> {
  const [row] = await query<{ exists: boolean }>(dsn, 'SELECT to_regclass($1) IS NOT NULL AS exists', [
    `public.${table}`,
  ]);
  return row?.exists === true;
}

async function movieIndexNames(dsn: string): Promise<string[]> {
  const rows = await query<{ indexname: string }>(
    dsn,
    `SELECT indexname FROM pg_indexes
     WHERE schemaname = 'public' AND tablename = 'movies' ORDER BY indexname`,
  );
  return rows.map((r) => r.indexname);
}

async function movieCheckNames(dsn: string): Promise<string[]> {
  const rows = await query<{ conname: string }>(
    dsn,
    `SELECT conname FROM pg_constraint
     WHERE conrelid = to_regclass('public.movies') AND contype = 'c' ORDER BY conname`,
  );
  return rows.map((r) => r.conname);
}

async function schemaMigrationsRows(dsn: string): Promise<{ version: string; dirty: boolean }[]> {
  return query(dsn, 'SELECT version, dirty FROM schema_migrations');
}

// Everything a client of the schema could observe: columns, constraints and indexes.
async function schemaSnapshot(dsn: string) {
  const columns = await query(
    dsn,
    `SELECT table_name, column_name, ordinal_position, data_type, udt_name, is_nullable,
            column_default, datetime_precision, character_maximum_length
     FROM information_schema.columns WHERE table_schema = 'public'
     ORDER BY table_name, ordinal_position`,
  );
  const constraints = await query(
    dsn,
    `SELECT conrelid::regclass::text AS table_name, conname, contype, pg_get_constraintdef(oid) AS def
     FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`,
  );
  const indexes = await query(
    dsn,
    `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`,
  );
  return { columns, constraints, indexes };
}

function databaseName(dsn: string): string {
  return decodeURIComponent(new URL(dsn).pathname.slice(1));
}

// crc32 (IEEE 802.3, reflected polynomial 0xEDB88320) written out here, independent of the
// source's use of node:zlib, so a wrong algorithm in either would show.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32Ieee(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// golang-migrate: database.GenerateAdvisoryLockId(dbName, schema, table)
//   = uint32(crc32.ChecksumIEEE(schema + "\x00" + table + "\x00" + dbName) * 1486364155)
function expectedLockId(database: string, schema = 'public', table = 'schema_migrations'): number {
  const sum = crc32Ieee(new TextEncoder().encode(`${schema}\x00${table}\x00${database}`));
  return Math.imul(sum, 1486364155) >>> 0;
}

// Number of sessions in `dsn`'s database waiting (not granted) for advisory lock `id`.
// A bigint advisory key shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
async function lockWaiters(client: pg.Client, id: number): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks
     WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid::bigint = 0 AND objid::bigint = $1`,
    [id],
  );
  return rows[0]?.n ?? 0;
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'greenlight-migrations-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type CliResult = { code: number; stdout: string; stderr: string };

// Runs `node bin/greenlight.js ...args` the way an operator would.
function cli(...args: string[]): Promise<CliResult> {
  // Hermetic: no test-runner context and no GREENLIGHT_* settings of the developer's shell.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT' && !k.startsWith('GREENLIGHT_')),
  );
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['bin/greenlight.js', ...args],
      { cwd: ROOT, env, timeout: 30_000, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(
            new Error(`greenlight ${args.join(' ')} did not exit normally: ${error.message}\n${stderr}`),
          );
          return;
        }
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------

describe('Migrator.up', () => {
  test("when the database is empty, then up applies every migration (the book's 3 first) and again applies none", async () => {
    const dsn = await createTestDatabase({ template: false });
    const steps: string[] = [];
    const migrator = new Migrator(dsn, {
      onStep: (s) => steps.push(`${s.version}/${s.direction} ${s.name}`),
    });
    assert.equal(migrator.latest, LATEST);
    assert.deepEqual(await migrator.version(), { version: null, dirty: false });

    assert.equal(await migrator.up(), COUNT);
    assert.deepEqual(
      steps.slice(0, 3),
      MOVIE_MIGRATIONS.map((name, i) => `${i + 1}/up ${name}`),
    );
    assert.deepEqual(
      steps,
      MIGRATIONS.map((m) => `${m.version}/up ${m.name}`),
    );
    assert.deepEqual(await migrator.version(), { version: LATEST, dirty: false });
    // golang-migrate keeps exactly one row.
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: String(LATEST), dirty: false }]);

    assert.equal(await migrator.up(), 0);
    assert.deepEqual(await migrator.version(), { version: LATEST, dirty: false });
    assert.equal(steps.length, COUNT);
  });

  test('when the database is empty and goto 3 runs, then exactly the 3 movies migrations are applied', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    assert.equal(await migrator.goto(3), 3);
    assert.deepEqual(await migrator.version(), { version: 3, dirty: false });
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: '3', dirty: false }]);
    assert.equal(await migrator.goto(3), 0);
  });

  test('when two migrators run up concurrently on an empty database, then each file is applied once', async () => {
    const dsn = await createTestDatabase({ template: false });
    const results = await Promise.all([new Migrator(dsn).up(), new Migrator(dsn).up()]);
    assert.equal(results[0] + results[1], COUNT);
    assert.deepEqual([...results].sort(byNumber), [0, COUNT]);
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: String(LATEST), dirty: false }]);
  });

  test('when two migrators are released at the same moment, then one applies them all, the other none, without error', async () => {
    const dsn = await createTestDatabase({ template: false });
    const id = expectedLockId(databaseName(dsn));
    await withClient(dsn, async (holder) => {
      // Hold the lock so both migrators are certainly in flight together, then release it.
      await holder.query('SELECT pg_advisory_lock($1)', [id]);
      const runs = [new Migrator(dsn).up(), new Migrator(dsn).up()];
      runs.forEach((run) => {
        run.catch(() => {});
      });
      await waitFor(async () => (await lockWaiters(holder, id)) === 2, 'two migrators waiting for the lock');
      await holder.query('SELECT pg_advisory_unlock($1)', [id]);
      const results = await Promise.all(runs);
      assert.deepEqual([...results].sort(byNumber), [0, COUNT]);
    });
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: String(LATEST), dirty: false }]);
    assert.deepEqual(await movieCheckNames(dsn), [
      'genres_length_check',
      'movies_runtime_check',
      'movies_year_check',
    ]);
  });
});

describe('Migrator.down and goto', () => {
  test('when up, down all and up run in turn, then the schema is gone in between and identical after', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.up();
    const before = await schemaSnapshot(dsn);

    assert.equal(await migrator.down('all'), COUNT);
    assert.equal(await tableExists(dsn, 'movies'), false);
    assert.equal(await tableExists(dsn, 'movies_id_seq'), false);
    assert.equal(await tableExists(dsn, 'schema_migrations'), true);
    assert.deepEqual(await schemaMigrationsRows(dsn), []);
    assert.deepEqual(await migrator.version(), { version: null, dirty: false });
    assert.equal(await migrator.down('all'), 0);

    assert.equal(await migrator.up(), COUNT);
    const after = await schemaSnapshot(dsn);
    assert.deepEqual(after.columns, before.columns);
    assert.deepEqual(after.constraints, before.constraints);
    assert.deepEqual(after.indexes, before.indexes);
    assert.ok(before.columns.length > 0);
  });

  test('when at 3, down 1 then goto 1 then goto 3 run, then each stops at the version asked for', async () => {
    const dsn = await createTestDatabase({ template: false });
    const steps: string[] = [];
    const migrator = new Migrator(dsn, { onStep: (s) => steps.push(`${s.version}/${s.direction}`) });
    await migrator.goto(3);
    steps.length = 0;

    assert.equal(await migrator.down(1), 1);
    assert.deepEqual(await migrator.version(), { version: 2, dirty: false });
    assert.deepEqual(await movieIndexNames(dsn), ['movies_pkey']);
    assert.equal((await movieCheckNames(dsn)).length, 3);

    assert.equal(await migrator.goto(1), 1);
    assert.deepEqual(await migrator.version(), { version: 1, dirty: false });
    assert.deepEqual(await movieCheckNames(dsn), []);
    assert.equal(await tableExists(dsn, 'movies'), true);

    assert.equal(await migrator.goto(3), 2);
    assert.deepEqual(await migrator.version(), { version: 3, dirty: false });
    assert.deepEqual(await movieIndexNames(dsn), ['movies_genres_idx', 'movies_pkey', 'movies_title_idx']);
    assert.deepEqual(steps, ['3/down', '2/down', '2/up', '3/up']);
  });

  test('when at the latest version and down 1 runs, then only the newest file is reverted', async () => {
    const dsn = await createTestDatabase({ template: false });
    const steps: number[] = [];
    const migrator = new Migrator(dsn, { onStep: (s) => steps.push(s.version) });
    await migrator.up();
    steps.length = 0;
    assert.equal(await migrator.down(1), 1);
    assert.deepEqual(steps, [LATEST]);
    assert.deepEqual(await migrator.version(), {
      version: MIGRATIONS.at(-2)?.version ?? null,
      dirty: false,
    });
  });

  test('when down asks for more steps than are applied, then it stops at no version', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.goto(2);
    assert.equal(await migrator.down(10), 2);
    assert.deepEqual(await migrator.version(), { version: null, dirty: false });
    assert.equal(await tableExists(dsn, 'movies'), false);
  });

  test('when goto names a version no file has, then it rejects and changes nothing', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    const missing = LATEST + 100;
    await assert.rejects(migrator.goto(missing), (err: Error) => {
      assert.ok(err instanceof MigrationError);
      assert.match(err.message, new RegExp(`no migration file has version ${missing}`));
      return true;
    });
    assert.equal(await tableExists(dsn, 'movies'), false);
  });
});

describe('schema', () => {
  test("when migrated, then the movies table has the book's columns, types, defaults and keys", async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const columns = await query(
      dsn,
      `SELECT column_name, data_type, udt_name, is_nullable, column_default, datetime_precision
       FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name = 'movies' ORDER BY ordinal_position`,
    );
    const col = (
      column_name: string,
      data_type: string,
      udt_name: string,
      column_default: string | null,
      datetime_precision: number | null = null,
    ) => ({ column_name, data_type, udt_name, is_nullable: 'NO', column_default, datetime_precision });
    assert.deepEqual(columns, [
      col('id', 'bigint', 'int8', "nextval('movies_id_seq'::regclass)"),
      col('created_at', 'timestamp with time zone', 'timestamptz', 'now()', 0),
      col('title', 'text', 'text', null),
      col('year', 'integer', 'int4', null),
      col('runtime', 'integer', 'int4', null),
      col('genres', 'ARRAY', '_text', null),
      col('version', 'integer', 'int4', '1'),
    ]);

    const [pk] = await query<{ conname: string; def: string }>(
      dsn,
      `SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = 'public.movies'::regclass AND contype = 'p'`,
    );
    assert.deepEqual(pk, { conname: 'movies_pkey', def: 'PRIMARY KEY (id)' });
  });

  test("when migrated, then the book's CHECK constraints and GIN indexes exist", async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const checks = await query<{ conname: string; def: string }>(
      dsn,
      `SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = 'public.movies'::regclass AND contype = 'c' ORDER BY conname`,
    );
    assert.deepEqual(checks, [
      {
        conname: 'genres_length_check',
        def: 'CHECK (((array_length(genres, 1) >= 1) AND (array_length(genres, 1) <= 5)))',
      },
      { conname: 'movies_runtime_check', def: 'CHECK ((runtime >= 0))' },
      {
        conname: 'movies_year_check',
        def: "CHECK (((year >= 1888) AND ((year)::double precision <= date_part('year'::text, now()))))",
      },
    ]);

    const indexes = await query<{ indexname: string; indexdef: string }>(
      dsn,
      `SELECT indexname, indexdef FROM pg_indexes
       WHERE schemaname = 'public' AND tablename IN ('movies', 'schema_migrations') ORDER BY indexname`,
    );
    assert.deepEqual(indexes, [
      {
        indexname: 'movies_genres_idx',
        indexdef:
          "CREATE INDEX movies_genres_idx ON public.movies USING gin (genres) WITH (gin_pending_list_limit='64')",
      },
      {
        indexname: 'movies_pkey',
        indexdef: 'CREATE UNIQUE INDEX movies_pkey ON public.movies USING btree (id)',
      },
      // Greenlight's own additions: the combined index (000008) and a 64 kB pending list on all
      // three GIN indexes (000009); columns and index keys are the book's.
      {
        indexname: 'movies_title_genres_idx',
        indexdef:
          "CREATE INDEX movies_title_genres_idx ON public.movies USING gin (to_tsvector('simple'::regconfig, title), genres) WITH (gin_pending_list_limit='64')",
      },
      {
        indexname: 'movies_title_idx',
        indexdef:
          "CREATE INDEX movies_title_idx ON public.movies USING gin (to_tsvector('simple'::regconfig, title)) WITH (gin_pending_list_limit='64')",
      },
      // and the btree indexes sorted pages read (000030)
      {
        indexname: 'movies_title_order_idx',
        indexdef: 'CREATE INDEX movies_title_order_idx ON public.movies USING btree (title)',
      },
      {
        indexname: 'movies_year_idx',
        indexdef: 'CREATE INDEX movies_year_idx ON public.movies USING btree (year)',
      },
      {
        indexname: 'schema_migrations_pkey',
        indexdef:
          'CREATE UNIQUE INDEX schema_migrations_pkey ON public.schema_migrations USING btree (version)',
      },
    ]);
  });

  test("when migrated, then schema_migrations is golang-migrate's (version bigint PK, dirty boolean)", async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const columns = await query(
      dsn,
      `SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name = 'schema_migrations' ORDER BY ordinal_position`,
    );
    assert.deepEqual(columns, [
      { column_name: 'version', data_type: 'bigint', is_nullable: 'NO', column_default: null },
      { column_name: 'dirty', data_type: 'boolean', is_nullable: 'NO', column_default: null },
    ]);
    const [pk] = await query<{ def: string }>(
      dsn,
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid = 'public.schema_migrations'::regclass AND contype = 'p'`,
    );
    assert.equal(pk?.def, 'PRIMARY KEY (version)');
  });

  test("when migrated, then users, tokens and permissions are the book's (citext e-mail, bytea hashes)", async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const columns = await query(
      dsn,
      `SELECT table_name, column_name, udt_name, is_nullable, column_default, datetime_precision
       FROM information_schema.columns WHERE table_schema = 'public'
         AND table_name IN ('users', 'tokens', 'permissions', 'users_permissions')
       ORDER BY table_name, ordinal_position`,
    );
    const col = (
      table_name: string,
      column_name: string,
      udt_name: string,
      column_default: string | null = null,
      datetime_precision: number | null = null,
    ) => ({ table_name, column_name, udt_name, is_nullable: 'NO', column_default, datetime_precision });
    assert.deepEqual(columns, [
      col('permissions', 'id', 'int8', "nextval('permissions_id_seq'::regclass)"),
      col('permissions', 'code', 'text'),
      col('tokens', 'hash', 'bytea'),
      col('tokens', 'user_id', 'int8'),
      col('tokens', 'expiry', 'timestamptz', null, 0),
      col('tokens', 'scope', 'text'),
      col('users', 'id', 'int8', "nextval('users_id_seq'::regclass)"),
      col('users', 'created_at', 'timestamptz', 'now()', 0),
      col('users', 'name', 'text'),
      col('users', 'email', 'citext'),
      col('users', 'password_hash', 'bytea'),
      col('users', 'activated', 'bool'),
      col('users', 'version', 'int4', '1'),
      // ours (migration 000011): the products API's role and the JWT generation
      col('users', 'role', 'text', "'user'::text"),
      col('users', 'token_generation', 'int4', '0'),
      col('users_permissions', 'user_id', 'int8'),
      col('users_permissions', 'permission_id', 'int8'),
    ]);
    const keys = await query(
      dsn,
      `SELECT conrelid::regclass::text AS table_name, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid::regclass::text IN ('users', 'tokens', 'permissions', 'users_permissions')
         AND contype IN ('p', 'u', 'f') ORDER BY 1, 2`,
    );
    assert.deepEqual(keys, [
      { table_name: 'permissions', def: 'PRIMARY KEY (id)' },
      { table_name: 'tokens', def: 'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE' },
      { table_name: 'tokens', def: 'PRIMARY KEY (hash)' },
      { table_name: 'users', def: 'PRIMARY KEY (id)' },
      { table_name: 'users', def: 'UNIQUE (email)' },
      {
        table_name: 'users_permissions',
        def: 'FOREIGN KEY (permission_id) REFERENCES permissions(id) ON DELETE CASCADE',
      },
      {
        table_name: 'users_permissions',
        def: 'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE',
      },
      { table_name: 'users_permissions', def: 'PRIMARY KEY (user_id, permission_id)' },
    ]);
    const codes = (await query<{ code: string }>(dsn, 'SELECT code FROM permissions')).map((r) => r.code);
    assert.ok(codes.includes('movies:read') && codes.includes('movies:write'), codes.join(' '));

    // citext: the unique e-mail ignores case, as the book relies on.
    const insertUser = (email: string) =>
      query(dsn, 'INSERT INTO users (name, email, password_hash, activated) VALUES ($1, $2, $3, false)', [
        'Alice',
        email,
        Buffer.from('not a real bcrypt hash'),
      ]);
    await insertUser('alice@example.com');
    await assert.rejects(insertUser('ALICE@Example.COM'), { code: '23505' });
  });

  test('when a row breaks a CHECK constraint, then PostgreSQL rejects it with 23514', async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const thisYear = new Date().getFullYear();
    const insert = (year: number, runtime: number, genres: string[]) =>
      query(dsn, 'INSERT INTO movies (title, year, runtime, genres) VALUES ($1, $2, $3, $4)', [
        'Casablanca',
        year,
        runtime,
        genres,
      ]);
    const violates = (constraint: string) => (err: unknown) => {
      assert.equal((err as { code?: string }).code, '23514');
      assert.equal((err as { constraint?: string }).constraint, constraint);
      return true;
    };
    await assert.rejects(insert(1500, 102, ['drama']), violates('movies_year_check'));
    await assert.rejects(insert(thisYear + 1, 102, ['drama']), violates('movies_year_check'));
    await assert.rejects(insert(1942, -1, ['drama']), violates('movies_runtime_check'));
    await assert.rejects(insert(1942, 102, ['a', 'b', 'c', 'd', 'e', 'f']), violates('genres_length_check'));

    await insert(1888, 0, ['a', 'b', 'c', 'd', 'e']);
    await insert(thisYear, 102, ['drama']);
    const rows = await query<{ id: string; version: number; created_at: Date }>(
      dsn,
      'SELECT id, version, created_at FROM movies ORDER BY id',
    );
    assert.deepEqual(
      rows.map((r) => [r.id, r.version]),
      [
        // bigserial: the failed inserts used sequence values 1-4.
        ['5', 1],
        ['6', 1],
      ],
    );
    assert.equal(rows[0]?.created_at.getMilliseconds(), 0);
  });
});

describe('dirty and unknown versions', () => {
  test('when the database is dirty, then up rejects mentioning dirty, and force clears it', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.up();
    // What golang-migrate leaves behind after a failed file.
    await query(dsn, 'UPDATE schema_migrations SET dirty = true');
    assert.deepEqual(await migrator.version(), { version: LATEST, dirty: true });

    for (const attempt of [() => migrator.up(), () => migrator.down(1), () => migrator.goto(1)]) {
      await assert.rejects(attempt(), (err: Error) => {
        assert.ok(err instanceof MigrationError);
        assert.match(err.message, /dirty/);
        return true;
      });
    }
    assert.deepEqual(await migrator.version(), { version: LATEST, dirty: true });

    await migrator.force(LATEST);
    assert.deepEqual(await migrator.version(), { version: LATEST, dirty: false });
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: String(LATEST), dirty: false }]);
    assert.equal(await migrator.up(), 0);
  });

  test('when force is given a version no migration file has, then it is refused and nothing changes', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.goto(1);
    await assert.rejects(migrator.force(99_999), (err: Error) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.message, 'no migration file has version 99999');
      return true;
    });
    assert.deepEqual(await migrator.version(), { version: 1, dirty: false });
  });

  test('when force is given -1, then the database has no version, like golang-migrate force -1', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.goto(1);
    await migrator.force(-1);
    assert.deepEqual(await migrator.version(), { version: null, dirty: false });
    assert.deepEqual(await schemaMigrationsRows(dsn), []);
  });

  test('when the database is at a version no file has, then up rejects instead of guessing', async () => {
    const dsn = await createTestDatabase({ template: false });
    const migrator = new Migrator(dsn);
    await migrator.up();
    const unknown = LATEST + 100;
    // As newer code's migrations leave it (force refuses a version no file here has).
    await query(dsn, 'UPDATE schema_migrations SET version = $1', [unknown]);
    await assert.rejects(migrator.up(), (err: Error) => {
      assert.ok(err instanceof MigrationError);
      assert.match(err.message, new RegExp(`version ${unknown}`));
      return true;
    });
  });
});

describe('a failing migration', () => {
  test('when file 2 fails, then it rejects naming the file, stays at version 1 clean, with nothing of file 2', async () => {
    const dsn = await createTestDatabase({ template: false });
    const steps: number[] = [];
    const migrator = new Migrator(dsn, { dir: BROKEN_DIR, onStep: (s) => steps.push(s.version) });
    await assert.rejects(migrator.up(), (err: Error) => {
      assert.ok(err instanceof MigrationError);
      assert.match(err.message, /000002_half_done\.up\.sql/);
      assert.match(err.message, /no_such_table/);
      return true;
    });
    assert.deepEqual(steps, [1]);
    assert.deepEqual(await migrator.version(), { version: 1, dirty: false });
    assert.deepEqual(await schemaMigrationsRows(dsn), [{ version: '1', dirty: false }]);
    assert.equal(await tableExists(dsn, 'widgets'), true);
    assert.equal(await tableExists(dsn, 'half_done'), false);
    const widgetColumns = await query<{ column_name: string }>(
      dsn,
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets' ORDER BY 1`,
    );
    assert.deepEqual(
      widgetColumns.map((c) => c.column_name),
      ['id'],
    );

    // Retrying fails the same way and still leaves a clean version 1.
    await assert.rejects(migrator.up(), MigrationError);
    assert.deepEqual(await migrator.version(), { version: 1, dirty: false });
  });
});

describe('advisory lock', () => {
  test("when the id is computed, then it matches golang-migrate's published test vectors", () => {
    // golang-migrate database/util_test.go: GenerateAdvisoryLockId("database_name",
    // "schema_name_1", "schema_name_2") == "3743845847" (names joined with \0, database last).
    assert.equal(advisoryLockId('database_name', 'schema_name_1', 'schema_name_2'), 3743845847);
    assert.equal(expectedLockId('database_name', 'schema_name_1', 'schema_name_2'), 3743845847);
    // And the independently computed crc32 agrees with node:zlib's.
    const probe = Buffer.from('public\x00schema_migrations\x00greenlight');
    assert.equal(crc32Ieee(probe), zlibCrc32(probe));
  });

  test('when the id is computed for public.schema_migrations, then it is crc32 * 1486364155 as uint32', () => {
    for (const db of ['greenlight', 'postgres', 'test_0123456789ab', 'grüne_ampel', '']) {
      const id = advisoryLockId(db);
      assert.equal(id, expectedLockId(db), db);
      assert.ok(Number.isInteger(id) && id >= 0 && id <= 0xffffffff, db);
    }
    assert.equal(advisoryLockId('greenlight'), 4080500878);
  });

  test('when another session holds the lock, then up waits for it and completes after unlock', async () => {
    const dsn = await createTestDatabase({ template: false });
    const id = expectedLockId(databaseName(dsn));
    await withClient(dsn, async (holder) => {
      await holder.query('SELECT pg_advisory_lock($1)', [id]);
      let finished = false;
      const run = new Migrator(dsn).up().finally(() => {
        finished = true;
      });
      run.catch(() => {});
      await waitFor(async () => (await lockWaiters(holder, id)) === 1, 'the migrator to wait for the lock');
      await sleep(300);
      assert.equal(finished, false, 'up finished while another session held the migration lock');
      assert.equal(await tableExists(dsn, 'movies'), false);

      await holder.query('SELECT pg_advisory_unlock($1)', [id]);
      assert.equal(await run, COUNT);
    });
    // The migrator released the lock: it can be taken at once.
    await withClient(dsn, async (c) => {
      const { rows } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [id]);
      assert.equal(rows[0]?.ok, true);
    });
  });
});

describe('migration files', () => {
  test('when readMigrations reads the repository, then it pairs up and down files in version order', () => {
    const migrations = readMigrations();
    assert.deepEqual(
      migrations.slice(0, 3).map((m) => [m.version, m.name]),
      MOVIE_MIGRATIONS.map((name, i) => [i + 1, name]),
    );
    // Sequential like `migrate create -seq`: 1, 2, 3, ... without gaps.
    const versions = migrations.map((m) => m.version);
    const expected = Array.from({ length: Math.max(...versions) }, (_, i) => i + 1);
    assert.deepEqual(versions, expected);
    const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql'));
    assert.equal(files.length, 2 * migrations.length, 'every migration has an up and a down file');
    for (const m of migrations) {
      const base = `${pad(m.version)}_${m.name}`;
      assert.equal(m.up, readFileSync(join(MIGRATIONS_DIR, `${base}.up.sql`), 'utf8'));
      assert.equal(m.down, readFileSync(join(MIGRATIONS_DIR, `${base}.down.sql`), 'utf8'));
    }
  });

  test('when a directory has stray files, a duplicate version or a missing up file, then readMigrations says so', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'README.md'), 'not a migration');
    writeFileSync(join(dir, '000001_one.up.sql'), 'SELECT 1;');
    assert.deepEqual(
      readMigrations(dir).map((m) => [m.version, m.name, m.down]),
      [[1, 'one', '']],
    );

    writeFileSync(join(dir, '000001_other.down.sql'), 'SELECT 1;');
    assert.throws(() => readMigrations(dir), MigrationError);
    rmSync(join(dir, '000001_other.down.sql'));

    writeFileSync(join(dir, '000002_two.down.sql'), 'SELECT 1;');
    assert.throws(() => readMigrations(dir), /000002|2_two/);
  });

  test('when createMigrationFiles is given a name, then it adds the next numbered empty up and down files', (t) => {
    const dir = tempDir(t);
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const before = readdirSync(MIGRATIONS_DIR).length;
    const next = pad(LATEST + 1);
    const files = createMigrationFiles('add_widgets_table', dir);
    assert.deepEqual(files, [
      join(dir, `${next}_add_widgets_table.up.sql`),
      join(dir, `${next}_add_widgets_table.down.sql`),
    ]);
    for (const file of files) assert.equal(readFileSync(file, 'utf8'), '');
    assert.equal(readMigrations(dir).at(-1)?.version, LATEST + 1);

    const after = pad(LATEST + 2);
    assert.deepEqual(
      createMigrationFiles('add_gadgets', dir).map((f) => f.slice(dir.length + 1)),
      [`${after}_add_gadgets.up.sql`, `${after}_add_gadgets.down.sql`],
    );
    // The repository's own directory is untouched.
    assert.equal(readdirSync(MIGRATIONS_DIR).length, before);
  });

  test('when createMigrationFiles runs in an empty directory, then it starts at 000001', (t) => {
    const dir = tempDir(t);
    assert.deepEqual(
      createMigrationFiles('init', dir).map((f) => f.slice(dir.length + 1)),
      ['000001_init.up.sql', '000001_init.down.sql'],
    );
  });

  test('when createMigrationFiles is given a bad name, then it throws and creates nothing', (t) => {
    const dir = tempDir(t);
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const before = readdirSync(dir).length;
    for (const name of ['', 'Create_Users', 'create-users', 'create users', '../escape', 'a/b', 'x.sql']) {
      assert.throws(() => createMigrationFiles(name, dir), MigrationError, JSON.stringify(name));
    }
    assert.equal(readdirSync(dir).length, before);
  });
});

describe('greenlight migrate (CLI)', () => {
  test("when the database is empty, then migrate version prints 'no migration'", async () => {
    const dsn = await createTestDatabase({ template: false });
    const result = await cli('migrate', 'version', '-db-dsn', dsn);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'no migration');
  });

  test('when migrate up runs, then it reports each file and migrate version prints the latest', async () => {
    const dsn = await createTestDatabase({ template: false });
    const up = await cli('migrate', 'up', '-db-dsn', dsn);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(up.stdout.trim().split('\n'), [
      ...MIGRATIONS.map((m) => `${m.version}/up ${m.name}`),
      `applied ${COUNT} migration(s)`,
    ]);
    const version = await cli('migrate', 'version', '-db-dsn', dsn);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), String(LATEST));
  });

  test("when migrate goto 3 runs, then migrate version prints '3'", async () => {
    const dsn = await createTestDatabase({ template: false });
    const goto = await cli('migrate', 'goto', '3', '-db-dsn', dsn);
    assert.equal(goto.code, 0, goto.stderr);
    assert.match(goto.stdout, /applied 3 migration\(s\)/);
    assert.equal((await cli('migrate', 'version', '-db-dsn', dsn)).stdout.trim(), '3');
  });

  test("when migrate down has no N, then it exits non-zero pointing at '-all' and reverts nothing", async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).up();
    const down = await cli('migrate', 'down', '-db-dsn', dsn);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /-all/);
    assert.deepEqual(await new Migrator(dsn).version(), { version: LATEST, dirty: false });
  });

  test('when at 3, migrate down 1 and then down -all run, then the version goes to 2 and then to none', async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).goto(3);
    const down = await cli('migrate', 'down', '1', '-db-dsn', dsn);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /reverted 1 migration\(s\)/);
    assert.equal((await cli('migrate', 'version', '-db-dsn', dsn)).stdout.trim(), '2');

    const all = await cli('migrate', 'down', '-all', '-db-dsn', dsn);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /reverted 2 migration\(s\)/);
    assert.equal((await cli('migrate', 'version', '-db-dsn', dsn)).stdout.trim(), 'no migration');
  });

  test('when the database is dirty, then migrate version shows it and migrate force clears it', async () => {
    const dsn = await createTestDatabase({ template: false });
    await new Migrator(dsn).goto(3);
    await query(dsn, 'UPDATE schema_migrations SET dirty = true');
    assert.equal((await cli('migrate', 'version', '-db-dsn', dsn)).stdout.trim(), '3 (dirty)');
    const up = await cli('migrate', 'up', '-db-dsn', dsn);
    assert.notEqual(up.code, 0);
    assert.match(up.stderr, /dirty/);
    const force = await cli('migrate', 'force', '3', '-db-dsn', dsn);
    assert.equal(force.code, 0, force.stderr);
    assert.equal((await cli('migrate', 'version', '-db-dsn', dsn)).stdout.trim(), '3');
  });
});
