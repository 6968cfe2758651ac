// How we reach the embedded PostgreSQL: a Unix socket in the data directory when its path
// allows one, TCP on 127.0.0.1 otherwise, and the same way again when a second process
// reuses a running server; the settings it runs with; and the one case where the start
// as root must give up.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { EmbeddedPostgresError } from '../src/platform/embedded-postgres.files.ts';
import { startEmbeddedPostgres } from '../src/platform/embedded-postgres.ts';
import { createLogger } from '../src/platform/logger.ts';
import { freePort, tempDataDir } from './processes.ts';

const logger = createLogger('warn');

// A data directory, removed after the test; `name` makes a subdirectory of that name.
function dataDirNamed(name = ''): string {
  const base = tempDataDir('greenlight-embedded-test-');
  after(() => rmSync(base, { recursive: true, force: true }));
  if (!name) return base;
  const dir = join(base, name);
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  return dir;
}

async function queryOne<T>(dsn: string, sql: string): Promise<T | undefined> {
  const client = new pg.Client({ connectionString: dsn });
  await client.connect();
  try {
    const { rows } = await client.query(sql);
    return rows[0] as T | undefined;
  } finally {
    await client.end();
  }
}

// NULL over a Unix socket, the server's address over TCP.
async function serverAddress(dsn: string): Promise<string | null> {
  return (await queryOne<{ addr: string | null }>(dsn, 'SELECT inet_server_addr() AS addr'))?.addr ?? null;
}

test('when the data directory is short and plain, then connections go through a Unix socket in it', async () => {
  const dataDir = dataDirNamed();
  const server = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger });
  try {
    assert.ok(server.dsn.includes(encodeURIComponent(join(dataDir, 'run'))), server.dsn);
    assert.equal(await serverAddress(server.dsn), null);
    // No background-writer sweep (see embedded-postgres.ts for the stalls it caused).
    const setting = await queryOne<{ bgwriter_lru_maxpages: string }>(
      server.dsn,
      'SHOW bgwriter_lru_maxpages',
    );
    assert.equal(setting?.bgwriter_lru_maxpages, '0');

    // A second process on the same directory reuses the server, through the same socket.
    const reused = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger });
    assert.equal(reused.dsn, server.dsn);
  } finally {
    await server.stop();
  }
});

for (const [why, name] of [
  ['the socket path would be too long for the kernel', 'd'.repeat(100)],
  ['the path holds a comma, which unix_socket_directories would split on', 'a,b'],
]) {
  test(`when ${why}, then connections use TCP on 127.0.0.1`, async () => {
    const dataDir = dataDirNamed(name);
    const server = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger });
    try {
      assert.match(server.dsn, /@127\.0\.0\.1:\d+\//);
      assert.equal(await serverAddress(server.dsn), '127.0.0.1');
    } finally {
      await server.stop();
    }
  });
}

test('when a cluster already sits where the "postgres" user cannot reach it, then the start fails with a one-line explanation', {
  skip: userInfo().uid !== 0 && 'only root runs PostgreSQL as another user',
}, async () => {
  const closedDir = mkdtempSync(join(tmpdir(), 'greenlight-closed-'));
  after(() => rmSync(closedDir, { recursive: true, force: true }));
  const dataDir = join(closedDir, 'data');
  mkdirSync(join(dataDir, 'postgres'), { recursive: true });
  writeFileSync(join(dataDir, 'postgres', 'PG_VERSION'), '18\n');
  await assert.rejects(startEmbeddedPostgres({ dataDir, port: await freePort(), logger }), (err: Error) => {
    assert.ok(err instanceof EmbeddedPostgresError);
    assert.match(err.message, /^the "postgres" user cannot reach the cluster in .*-data-dir/);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
});
