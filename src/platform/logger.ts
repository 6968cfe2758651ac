// Structured JSON logs on stdout, one object a line (pino: fast, and Fastify's own).
import { pino } from 'pino';
import { redactQuery, redactUrl } from './flags.ts';
import { traceLogFields } from './tracing.ts';

export type Logger = pino.Logger;

// The fields that hold a URL (a request's, or a configured endpoint such as the callback
// service's upstream), which may carry credentials.
function redactLogged(value: unknown): unknown {
  return typeof value === 'string' ? redactUrl(value) : value;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { path: redactQuery, url: redactLogged, upstream: redactLogged },
      // trace_id and span_id of the active span, when tracing is on
      mixin: traceLogFields(),
    },
    destination ?? pino.destination({ sync: false }),
  );
}
