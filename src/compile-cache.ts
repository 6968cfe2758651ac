// `greenlight compile-cache`: every TypeScript module of the service, compiled into Node's
// compile cache before the service starts. A process that finds all of its modules there
// never loads Node's type stripper, which otherwise stays loaded for the life of the process
// (about 30 MiB more in the cluster primary, 10-20 in each worker; docs/performance.md). A
// cache in a fresh temporary directory is empty at every start (a new container, systemd's
// PrivateTmp), so the deployments run this first (Dockerfile, deploy/greenlight.service).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { getCompileCacheDir } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { workerExecArgv } from './cluster.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function typeScriptModules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

// Importing a module compiles it; the modules of the service only define things when
// imported (src/main.ts, which runs the command line, is this process's own entry point and
// is loaded already). The cache is written when the command ends (main.ts). Cluster workers
// run with V8 flags of their own, under which Node keeps a separate cache inside the one
// the primary passes them (cluster.ts): `workers` compiles the same modules as they would,
// in a child process started like one.
export async function compileEveryModule(only?: 'workers'): Promise<string[]> {
  const directory = getCompileCacheDir();
  if (!directory) throw new Error('the compile cache is off (is NODE_DISABLE_COMPILE_CACHE set?)');
  const modules = [...typeScriptModules(join(ROOT, 'src')), ...typeScriptModules(join(ROOT, 'gen'))];
  for (const path of modules) await import(pathToFileURL(path).href);
  const done = [`compiled ${modules.length} modules into ${directory}`];
  if (only === 'workers') return done;
  const workers = spawnSync(
    process.execPath,
    [
      ...workerExecArgv(process.execArgv, process.env.NODE_OPTIONS ?? ''),
      join(ROOT, 'bin/greenlight.js'),
      'compile-cache',
      'workers',
    ],
    { env: { ...process.env, NODE_COMPILE_CACHE: directory }, encoding: 'utf8' },
  );
  if (workers.status !== 0) throw new Error(`compiling for the workers failed: ${workers.stderr}`);
  return [...done, `${workers.stdout.trim()} (for cluster workers)`];
}
