// What a process loads: the cluster primary of `serve -workers N` only forks and supervises,
// so it must not import the application (Fastify, the routes, GraphQL, ...), which its
// workers do. Observed from outside, with a module hook every process of the cluster gets.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDatabase } from './helpers.ts';
import { ROOT, SERVE_FLAGS, withTimeout } from './processes.ts';

const dsn = await createTestDatabase();

// Each process writes the URLs of the modules it loaded, then Node's own modules it loaded
// (\`NativeModule internal/...\`), to <dir>/<pid> when it exits.
const MODULE_LOG = `data:text/javascript,${encodeURIComponent(`
  import { registerHooks } from 'node:module';
  import { writeFileSync } from 'node:fs';
  const loaded = [];
  registerHooks({ load: (url, context, next) => { loaded.push(url); return next(url, context); } });
  process.on('exit', () => writeFileSync(process.env.MODULE_LOG_DIR + '/' + process.pid, [...loaded, ...process.moduleLoadList].join('\\n')));
`)}`;

// A cluster of `serve -workers 2` with the module log in every process, run until both
// workers serve, then stopped: its primary's pid and RSS, its workers' pids, and the modules
// each of them loaded.
async function runCluster(t: TestContext, flags: string[], env: NodeJS.ProcessEnv = process.env) {
  const dir = mkdtempSync(join(tmpdir(), 'greenlight-modules-'));
  const child = spawn(
    process.execPath,
    [
      ...['--import', MODULE_LOG, 'bin/greenlight.js', 'serve', ...SERVE_FLAGS],
      ...['-db-dsn', dsn, '-workers', '2', ...flags],
    ],
    { cwd: ROOT, env: { ...env, MODULE_LOG_DIR: dir }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGKILL'));
  const exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const workerPids = () => [
    ...new Set([...stdout.matchAll(/"pid":(\d+)[^\n]*"msg":"starting server"/g)].map((m) => Number(m[1]))),
  ];
  await withTimeout(
    (async () => {
      while (workerPids().length < 2 && child.exitCode === null) await sleep(50);
    })(),
    30_000,
    `two workers to start\n${stdout}`,
  );
  const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024;
  child.kill('SIGTERM');
  assert.equal(await withTimeout(exited, 20_000, 'the cluster to stop'), 0);
  const modules = (pid: number) => readFileSync(join(dir, String(pid)), 'utf8').split('\n');
  return { primary: child.pid as number, rssMiB, workers: workerPids(), modules };
}

test('when serve runs with -workers 2, then the primary imports none of the application while each worker does', async (t) => {
  // Given -jwt-secret, as production requires.
  const { primary, rssMiB, workers, modules } = await runCluster(t, [
    ...['-grpc-addr', '127.0.0.1:0', '-jwt-secret', 'a-secret-of-at-least-thirty-two-bytes-0123'],
  ]);
  const application = (urls: string[]) =>
    urls.filter((url) => /\/src\/app\.ts$|\/node_modules\/(fastify|mercurius|graphql|pg-boss)\//.test(url));
  assert.deepEqual(application(modules(primary)), [], 'the primary loads no application module');
  // Node's bundled undici (about 13 MiB) comes with any ES import of node:http (errors.ts).
  assert.deepEqual(
    modules(primary).filter((name) => name.includes('internal/deps/undici')),
    [],
    'the primary loads no undici',
  );
  // A short-lived child migrates the database (src/prepare.ts), and no key is made or read
  // from disk: neither the PostgreSQL driver nor node:crypto (about 9 MiB together).
  assert.deepEqual(
    modules(primary).filter((name) => /\/node_modules\/pg\/|^NativeModule crypto$/.test(name)),
    [],
    'the primary loads neither pg nor node:crypto',
  );
  // Tracing is off: no SDK, exporter or instrumentation, and no module of ours imports the
  // API (prom-client's default metrics require its CommonJS build, index.cjs, for exemplars).
  const openTelemetry = (urls: string[]) =>
    urls.filter((url) => /\/@opentelemetry\/(?!api\/dist\/[\w/-]+\.cjs$)/.test(url));
  // undici, Node's bundled copy or the package (8-9 MiB of a worker), waits for a call
  // that needs it (the payment provider's, Connect's adapter), except in the one worker that
  // runs the callback service, whose upstream client is one.
  const undici = (urls: string[]) =>
    urls.filter((url) => /internal\/deps\/undici|\/node_modules\/undici\//.test(url));
  const runsCallbacks = (urls: string[]) => urls.some((url) => url.endsWith('/src/callbacks/upstream.ts'));
  for (const pid of workers) {
    assert.ok(application(modules(pid)).length > 0, `worker ${pid} loads the application`);
    assert.deepEqual(openTelemetry(modules(pid)), [], `worker ${pid} loads OpenTelemetry with tracing off`);
  }
  const others = workers.filter((pid) => !runsCallbacks(modules(pid)));
  assert.equal(others.length, 1, 'one worker runs the callback service');
  for (const pid of others)
    assert.deepEqual(undici(modules(pid)).slice(0, 3), [], `worker ${pid} loads undici before it is used`);
  // Measured at about 68 MiB on a warm compile cache, 100 on an empty one (200 MiB when it loaded
  // the application); generous for any machine.
  assert.ok(rssMiB < 150, `the primary holds ${rssMiB.toFixed(0)} MiB`);
});

test("when npm install's postinstall (compile-cache) has filled an empty cache, then no process of serve -workers 2 loads the TypeScript stripper", async (t) => {
  // A temporary directory of its own, where the default compile cache lives: empty at first.
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: mkdtempSync(join(tmpdir(), 'greenlight-cache-')) };
  delete env.NODE_COMPILE_CACHE;
  // What `npm install` runs last, so that a new user's first start is as lean as any.
  const filled = spawnSync('npm', ['run', '--silent', 'postinstall'], { cwd: ROOT, env, encoding: 'utf8' });
  assert.equal(filled.status, 0, filled.stderr);
  assert.match(
    filled.stdout,
    /^compiled \d+ modules into .*\ncompiled \d+ modules into .* \(for cluster workers\)\n$/,
  );

  const { primary, workers, modules } = await runCluster(t, [], env);
  for (const pid of [primary, ...workers]) {
    assert.deepEqual(
      modules(pid).filter((name) => name.includes('amaro')),
      [],
      `process ${pid} loads the stripper`,
    );
  }
});

// Whether the process loaded Node's TypeScript stripper (amaro), told on stderr at exit.
const STRIPPER_PROBE = `data:text/javascript,${encodeURIComponent(`
  process.on('exit', () => process.stderr.write('stripper loaded: ' + process.moduleLoadList.some((m) => m.includes('amaro')) + '\\n'));
`)}`;

test('when the command runs on a warm compile cache, then it loads no TypeScript stripper, which a bare src/main.ts always does', () => {
  // A temporary directory of its own, where the default compile cache lives: cold at first.
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: mkdtempSync(join(tmpdir(), 'greenlight-cache-')) };
  delete env.NODE_COMPILE_CACHE;
  const stripperLoaded = (entry: string) => {
    const run = spawnSync(process.execPath, ['--import', STRIPPER_PROBE, entry, '-version'], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^Version:/);
    return /stripper loaded: (true|false)/.exec(run.stderr)?.[1];
  };
  assert.equal(stripperLoaded('bin/greenlight.js'), 'true', 'the first start strips and fills the cache');
  assert.equal(stripperLoaded('bin/greenlight.js'), 'false');
  assert.equal(stripperLoaded('src/main.ts'), 'true');
});
