// Structured JSON logs on stdout, one object a line (pino: fast, and Fastify's own).
import { pino } from 'pino';
import { traceLogFields } from './tracing.ts';

export type Logger = pino.Logger;

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // trace_id and span_id of the active span, when tracing is on
      mixin: traceLogFields(),
    },
    destination ?? pino.destination({ sync: false }),
  );
}
