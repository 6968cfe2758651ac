// Credentials out of what is shown or logged: the values of credential-looking query
// parameters, and the userinfo of a URL.
import { REDACTED } from './flags.ts';

// Query parameters whose value is a credential or stands for one (?api_key=, ?token=,
// ?access_token=, ?password=, ?code=, ?signature=...).
const SENSITIVE_PARAM = /key|token|secret|pass|pwd|auth|credential|session|sig|code|jwt|dsn|cookie/i;

// A request target as it may be logged: the path and the names of the query parameters are
// kept (they say what was asked), the value of each parameter whose name looks sensitive is
// REDACTED. Every log line's `path` field goes through it (`url` through redactUrl: pino
// serializers, logger.ts), so no module can log a credential sent in a query string.
export function redactQuery(target: unknown): unknown {
  return typeof target === 'string' ? redactedQuery(target) : target;
}

// Userinfo of a URL: up to the last @ before the path, so a password with an unescaped @
// goes whole.
const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#\s]*@/i;

// A URL as it may be shown or logged: its userinfo and its credential-looking query values
// REDACTED. The one redactor of URL values: flag values wherever configuration is shown
// (config.ts) and the log's `url` and `upstream` fields.
export function redactUrl(value: string): string {
  return redactedQuery(value.replace(URL_USERINFO, `$1${REDACTED}@`));
}

function redactedQuery(target: string): string {
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
