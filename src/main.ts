// greenlight's entry point, loaded by bin/greenlight.js (the command); the commands are in
// cli.ts.
//
// Node strips the types of each .ts module with a WebAssembly compiler that, once loaded,
// holds 15 to 35 MiB for the life of the process. The compile cache keeps every module's
// stripped and compiled form on disk (checked against its source), so later starts, and
// every cluster worker (cluster.ts passes the cache on), load none of it. bin/greenlight.js
// turns it on before this module is loaded; a bare `node src/main.ts` turns it on here, with
// only node:module imported before it and everything else after (this module itself is then
// stripped by the compiler, which stays loaded).
//
// Tracing, when configured, starts before the commands are imported: OpenTelemetry's
// instrumentations patch pg and node:http as they are loaded, and the commands load them.
import { enableCompileCache, flushCompileCache } from 'node:module';

enableCompileCache();
const { ConfigError, readSettings, readTracingConfig } = await import('./config.ts');
const { startTracing } = await import('./platform/tracing.ts');

const argv = process.argv.slice(2);
try {
  await startTracing(readTracingConfig(readSettings(argv)));
} catch (err) {
  // A bad flag: the command reads the settings again at its start and reports it.
  if (!(err instanceof ConfigError)) throw err;
}
const { main, reportFailure } = await import('./cli.ts');
main(argv).then(
  // A server runs on: what it compiled is written now, for the next start and any replacement
  // worker, not only when it exits.
  () => flushCompileCache(),
  async (err: unknown) => {
    await reportFailure(err);
    process.exit(1);
  },
);
