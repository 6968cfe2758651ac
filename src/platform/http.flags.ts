// Flags of the HTTP server: where it listens, whom it believes, how long a client may take,
// how many connections it keeps, and which browser origins may read its answers.
import { isIP } from 'node:net';
import { bool, check, duration, durationRange, type FlagValues, int, text, when } from './flags.ts';
import type { Environment } from './process.flags.ts';

export function trustedOriginsOf(value: string): string[] {
  return value.split(/\s+/).filter(Boolean);
}

function proxiesOf(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

function isAddressOrCidr(proxy: string): boolean {
  const [address = '', prefix] = proxy.split('/');
  const family = isIP(address);
  const maxPrefix = family === 6 ? 128 : 32;
  return family !== 0 && (prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= maxPrefix));
}

// An origin as a browser sends it in `Origin`: scheme, host and port, nothing else. Trusted
// origins are compared as strings, so a wildcard (https://*.example.com), a port past 65535,
// upper case or a default port written out (:443) would never match: refused rather than
// silently trusting nobody.
function isOrigin(origin: string): boolean {
  if (!/^https?:\/\/[^/\s*]+$/.test(origin)) return false;
  try {
    return new URL(origin).origin === origin;
  } catch {
    return false;
  }
}

export const httpFlags = {
  port: int({
    default: '4000',
    help: 'API port (0 picks a free one)',
    rule: when((n) => n >= 0 && n <= 65535, 'must be between 0 and 65535'),
  }),
  host: text({
    default: '',
    help: 'listen address; empty: `127.0.0.1` in development (the demo account, GraphiQL and profiling stay off the network), `0.0.0.0` in staging and production. The Dockerfile and compose set `0.0.0.0`',
  }),
  'trusted-proxies': text({
    default: '',
    help: 'space-separated IPs/CIDRs whose `X-Forwarded-For` is believed',
    rule: (value) => {
      const bad = proxiesOf(value).find((proxy) => !isAddressOrCidr(proxy));
      return bad === undefined ? undefined : `"${bad}" is not an IP address or CIDR`;
    },
  }),
  'read-header-timeout': duration({
    default: '10s',
    help: 'time a client has to send its request headers, 1s-1h (408 after)',
    rule: durationRange(1000, 3_600_000),
  }),
  'read-timeout': duration({
    default: '30s',
    help: 'time a client has to send a whole request, body included, at most 24h (408 after)',
    rule: durationRange(0, 86_400_000),
  }),
  'idle-timeout': duration({
    default: '1m',
    help: 'an idle keep-alive connection is closed after this (1s-24h)',
    rule: durationRange(1000, 86_400_000),
  }),
  'max-connections': int({
    default: '0',
    help: 'open client connections in all, across workers; 0 = each process its open-files limit less 1,024',
    rule: when((n) => n >= 0, 'must not be negative'),
  }),
  'max-connections-per-ip': int({
    default: '256',
    help: 'open connections per client address in all, across workers (trusted proxies exempt); 0 = no cap',
    rule: when((n) => n >= 0, 'must not be negative'),
  }),
  // Applied at run time: CORS reads the current origins on every request (settings/runtime.ts).
  'cors-trusted-origins': text({
    default: '',
    help: 'space-separated origins allowed to read responses in a browser',
    runtime: true,
    rule: (value) => {
      const bad = trustedOriginsOf(value).find((origin) => !isOrigin(origin));
      return bad === undefined ? undefined : `"${bad}" is not an origin like https://example.com`;
    },
  }),
  'metrics-loopback': bool({
    default: 'true',
    help: 'loopback clients may read `/debug/vars` and `/metrics` without `metrics:view`',
  }),
};

export function httpConfig(v: FlagValues<typeof httpFlags>, env: Environment) {
  check(
    v['read-timeout'] >= v['read-header-timeout'],
    'read-timeout',
    'must not be shorter than -read-header-timeout',
  );
  return {
    port: v.port,
    host: v.host || (env === 'development' ? '127.0.0.1' : '0.0.0.0'),
    trustedProxies: Object.freeze(proxiesOf(v['trusted-proxies'])),
    metricsLoopback: v['metrics-loopback'],
    cors: Object.freeze({ trustedOrigins: Object.freeze(trustedOriginsOf(v['cors-trusted-origins'])) }),
    http: Object.freeze({
      readHeaderTimeoutMs: v['read-header-timeout'],
      readTimeoutMs: v['read-timeout'],
      idleTimeoutMs: v['idle-timeout'],
      // 0: derived from the open-files limit at start
      maxConnections: v['max-connections'],
      // 0: no cap
      maxConnectionsPerIp: v['max-connections-per-ip'],
    }),
  };
}
