#!/usr/bin/env node
// The `greenlight` command. JavaScript, not TypeScript, so that it can turn on Node's compile
// cache before any TypeScript is loaded: Node strips a .ts module's types with a WebAssembly
// compiler that, once loaded, holds about 16 MiB for the life of the process. On a warm cache
// (every start after the first) the process never loads it, so neither does the cluster
// primary, which lives as long as the service (docs/performance.md, "What bounds RSS").
import * as nodeModule from 'node:module';

if (!process.features.typescript) {
  process.stderr.write(
    `greenlight: Node ${process.version} cannot run TypeScript; it needs Node 24 (npx greenlight runs the project's own)\n`,
  );
  process.exit(1);
}
nodeModule.enableCompileCache();
await import('../src/main.ts');
