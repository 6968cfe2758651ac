// Structured JSON logs on stdout, one object a line (pino: fast, and Fastify's own).
import { pino } from 'pino';
import { REDACTED } from './flags.ts';
import { traceLogFields } from './tracing.ts';

export type Logger = pino.Logger;

// Query parameters whose value is a credential or stands for one (?api_key=, ?token=,
// ?access_token=, ?password=, ?code=, ?signature=...).
const SENSITIVE_PARAM = /key|token|secret|pass|pwd|auth|credential|session|sig|code|jwt|dsn|cookie/i;

// A request target as it may be logged: the path and the names of the query parameters are
// kept (they say what was asked), the value of each parameter whose name looks sensitive is
// REDACTED. Every log line's `path` and `url` field goes through it (pino serializers), so no
// module can log a credential sent in a query string.
export function redactQuery(target: unknown): unknown {
  if (typeof target !== 'string') return target;
  const start = target.indexOf('?');
  if (start === -1) return target;
  const query = target
    .slice(start + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      return eq !== -1 && SENSITIVE_PARAM.test(decodedName(name)) ? `${name}=${REDACTED}` : pair;
    });
  return `${target.slice(0, start)}?${query.join('&')}`;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '));
  } catch {
    return name;
  }
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { path: redactQuery, url: redactQuery },
      // trace_id and span_id of the active span, when tracing is on
      mixin: traceLogFields(),
    },
    destination ?? pino.destination({ sync: false }),
  );
}
