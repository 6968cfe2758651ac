#!/usr/bin/env node
// greenlight: the one command-line entry point; the commands are in cli.ts.
// Tracing, when configured, starts before the commands are imported: OpenTelemetry's
// instrumentations patch pg and node:http as they are loaded, and the commands load them.
import { ConfigError, readSettings, readTracingConfig } from './config.ts';
import { startTracing } from './platform/tracing.ts';

const argv = process.argv.slice(2);
try {
  await startTracing(readTracingConfig(readSettings(argv)));
} catch (err) {
  // A bad flag: the command reads the settings again at its start and reports it.
  if (!(err instanceof ConfigError)) throw err;
}
const { main, reportFailure } = await import('./cli.ts');
main(argv).catch((err: unknown) => {
  reportFailure(err);
  process.exit(1);
});
