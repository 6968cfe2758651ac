// The JWT secret and the EdDSA keys live in files that several processes create and read at
// once: the workers of a cluster, or two instances started together on one data directory.
// None may read a file another has created but not yet written.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PROCESSES = 4;

const root = mkdtempSync(join(tmpdir(), 'greenlight-key-files-'));
after(() => rmSync(root, { recursive: true, force: true }));

// Each process resolves `count` fresh directories in the same order, printing what it read
// from each (or the error it met), so that the processes race on every directory.
const script = (body: string) => `
  import { ed25519Keys, jwtSecretFromDataDir } from ${JSON.stringify(new URL('../src/auth/jwt-keys.ts', import.meta.url).pathname)};
  const [base, count] = [process.argv[1], Number(process.argv[2])];
  const read = [];
  for (let i = 0; i < count; i++) {
    const dir = base + '/' + i;
    try { read.push(${body}); } catch (err) { read.push('error: ' + err.message); }
  }
  process.stdout.write(JSON.stringify(read));`;

async function race(body: string, base: string, count: number): Promise<string[][]> {
  const args = ['--input-type=module', '-e', script(body), base, String(count)];
  const outputs = await Promise.all(
    Array.from({ length: PROCESSES }, () => run(process.execPath, args, { maxBuffer: 1 << 24 })),
  );
  return outputs.map(({ stdout }) => JSON.parse(stdout) as string[]);
}

test('when processes resolve the JWT secret of the same data directories at once, then each reads the one whole secret', async () => {
  const count = 1000;
  const read = await race('jwtSecretFromDataDir(dir)', join(root, 'secret'), count);
  for (let i = 0; i < count; i++) {
    const secrets = new Set(read.map((r) => r[i]));
    assert.equal(secrets.size, 1, `directory ${i}: ${[...secrets].join(' | ')}`);
    assert.match([...secrets][0] as string, /^[\w-]{43}$/);
  }
});

test('when processes open the same empty EdDSA key directories at once, then each reads whole keys and signs', async () => {
  const count = 500;
  const body = 'ed25519Keys(dir, 60000).signing().kid';
  const read = await race(body, join(root, 'keys'), count);
  for (let i = 0; i < count; i++) {
    for (const kid of read.map((r) => r[i])) assert.match(kid as string, /^[\w-]{12}$/, `directory ${i}`);
  }
});
