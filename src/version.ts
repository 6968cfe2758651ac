// Version of this build: the package version plus the git commit it was built from.
// GREENLIGHT_COMMIT wins (set it when building an image without .git); otherwise the
// commit is read straight from .git so no git binary is needed at run time.
import { existsSync, readFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);

function readCommit(): string {
  const fromEnv = process.env.GREENLIGHT_COMMIT;
  if (fromEnv) return fromEnv;
  try {
    const head = readFileSync(new URL('.git/HEAD', root), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 12);
    const ref = head.slice(5);
    const refFile = new URL(`.git/${ref}`, root);
    if (existsSync(refFile)) return readFileSync(refFile, 'utf8').trim().slice(0, 12);
    const packed = readFileSync(new URL('.git/packed-refs', root), 'utf8');
    const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
    return line ? line.slice(0, 12) : 'unknown';
  } catch {
    return 'unknown';
  }
}

const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string };

export const version: string = pkg.version;
export const commit: string = readCommit();
