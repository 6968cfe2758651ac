// The .proto contract: lint clean, and the code generated from it (gen/) current.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const ROOT = join(import.meta.dirname, '..');
const BUF = join(ROOT, 'node_modules/.bin/buf');

function filesUnder(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(relative(dir, path), readFileSync(path, 'utf8'));
  }
  return files;
}

test('when buf lints the contract, then it finds nothing', () => {
  execFileSync(BUF, ['lint'], { cwd: ROOT, stdio: 'pipe' });
});

test('when the code is generated again from proto/, then gen/ holds exactly it (else: npm run proto:generate)', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'greenlight-gen-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // The plugin is found on PATH, as npm run puts it there.
  const env = { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}` };
  execFileSync(BUF, ['generate', '-o', out], { cwd: ROOT, env, stdio: 'pipe' });
  execFileSync(BUF, ['generate', '--template', 'buf.gen.health.yaml', '-o', out], {
    cwd: ROOT,
    env,
    stdio: 'pipe',
  });
  const expected = filesUnder(join(out, 'gen'));
  const committed = filesUnder(join(ROOT, 'gen'));
  assert.deepEqual(
    [...committed.keys()].sort(),
    [...expected.keys()].sort(),
    'gen/ has other files than proto/ generates',
  );
  for (const [path, text] of expected) {
    assert.ok(
      committed.get(path) === text,
      `gen/${path} is stale: run \`npm run proto:generate\` and commit it`,
    );
  }
});
