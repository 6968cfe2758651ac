// The README and docs/ as a newcomer follows them: every shell block runs, page by page, against
// a fresh server started as the README says, and every curl gets the status its line promises.
// The rules a page must follow are in docs/development.md ("The examples in these pages are
// tested"); a page that breaks them fails here, not in a newcomer's terminal.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { freePort, ROOT, startServer, tempDataDir, withTimeout } from './processes.ts';

const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];

type Block = { page: string; line: number; language: string; code: string; noRun?: string };

// Fenced blocks, indented ones (inside list items) included, with the no-run marker that
// precedes a block on the line before its fence.
function blocksOf(page: string): Block[] {
  const lines = readFileSync(join(ROOT, page), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const indent = (open[1] as string).length;
    const body: string[] = [];
    let end = i + 1;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) {
      body.push((lines[end] as string).slice(indent));
      end++;
    }
    const marker = /^\s*<!-- no-run: (.+) -->\s*$/.exec(lines[i - 1] ?? '');
    blocks.push({
      page,
      line: i + 1,
      language: open[2] as string,
      code: body.join('\n'),
      ...(marker ? { noRun: marker[1] as string } : {}),
    });
    i = end;
  }
  return blocks;
}

const SHELL = new Set(['sh', 'bash', 'console']);

// The commands of a block as bash will read them: a console block's `$ ` lines, and each curl
// line whose trailing comment promises a status gets that status as its expectation.
function scriptOf(block: Block): string {
  const lines = block.code.split('\n');
  const commands =
    block.language === 'console' ? lines.filter((l) => l.startsWith('$ ')).map((l) => l.slice(2)) : lines;
  const out: string[] = [];
  for (let i = 0; i < commands.length; i++) {
    const first = i;
    while (/\\$/.test(commands[i] as string) && i + 1 < commands.length) i++;
    const last = commands[i] as string;
    const promised = /\s#\s*(\d{3})\b/.exec(last)?.[1];
    for (let j = first; j <= i; j++) {
      const line = commands[j] as string;
      out.push(j === first && promised && /^curl\s/.test(line) ? `DOCS_EXPECT=${promised} ${line}` : line);
    }
  }
  return out.join('\n');
}

const PREAMBLE = readFileSync(join(ROOT, 'test/fixtures/docs-curl.sh'), 'utf8');

function runScript(script: string, cwd: string, timeoutMs: number) {
  const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
    cwd,
    env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GREENLIGHT_'))),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  return withTimeout(exited, timeoutMs, 'a page of shell examples').then(
    (code) => ({ code, output }),
    (err: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${err.message}\n${output}`);
    },
  );
}

test('when every shell block of README.md and docs/ runs in order against a fresh server, then each curl gets the status its page promises', async (t) => {
  // A directory that stands for a checkout: the project to run, and the files the pages write.
  const checkout = tempDataDir('greenlight-docs-');
  for (const entry of ['package.json', 'node_modules', 'bin', 'src', 'gen', 'clients', 'migrations'])
    symlinkSync(join(ROOT, entry), join(checkout, entry));
  const dataDir = join(checkout, 'data');
  const dbPort = await freePort();
  const grpcPort = await freePort();
  const server = await startServer(
    t,
    ['-data-dir', dataDir, '-embedded-db-port', String(dbPort), '-grpc-addr', `127.0.0.1:${grpcPort}`],
    60_000,
    checkout,
  );
  // After the server is killed (hooks run in the order they were added): until then it may
  // still log into the checkout (the orders' workflow retrying a payment provider that the
  // pages never start).
  t.after(() => rmSync(checkout, { recursive: true, force: true }));
  const log = join(checkout, 'greenlight.log');
  writeFileSync(log, server.stdout());
  server.child.stdout?.on('data', (chunk: Buffer) => appendFileSync(log, chunk));

  for (const page of PAGES) {
    const blocks = blocksOf(page).filter((b) => SHELL.has(b.language) && !b.noRun);
    if (blocks.length === 0) continue;
    for (const block of blocks) {
      const commands = block.code.replace(/(^|\s)#.*$/gm, '');
      assert.doesNotMatch(
        commands,
        /(?<!npx )(?<![\w./-])node\s/,
        `${page}:${block.line}: a bare node (the system's may be older than 24); use npx node`,
      );
    }
    const script = [PREAMBLE, ...blocks.map((b) => `# ${page}:${b.line}\n${scriptOf(b)}`)]
      .join('\n')
      .replaceAll('localhost:4000', `127.0.0.1:${server.port}`)
      .replaceAll('localhost:4001', `127.0.0.1:${grpcPort}`);
    const { code, output } = await runScript(script, checkout, 120_000);
    assert.equal(code, 0, `${page}: its examples failed\n${output.slice(-4000)}`);
  }
});

test('when the README and docs/ are read, then every relative link names a file of the repository', () => {
  for (const page of PAGES) {
    const text = readFileSync(join(ROOT, page), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const path = (target as string).split('#')[0] as string;
      assert.doesNotMatch(target as string, /^[a-z]+:/, `${page}: ${target} links outside the repository`);
      if (path === '') continue;
      const file = resolve(ROOT, dirname(page), path);
      assert.ok(!relative(ROOT, file).startsWith('..'), `${page}: ${target} is outside the repository`);
      assert.ok(existsSync(file), `${page}: ${target} does not exist`);
    }
  }
});
