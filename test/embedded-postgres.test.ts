// How we reach the embedded PostgreSQL: a Unix socket in the data directory when its path
// allows one, TCP on 127.0.0.1 otherwise, and the same way again when a second process
// reuses a running server; and the settings it runs with.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
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
