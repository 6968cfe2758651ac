// Flags of the rate limiter. Its rate, burst and on/off switch may change at run time: the
// limiter reads them on every request (settings/runtime.ts keeps them current).
import { bool, type FlagValues, float, int, when } from './flags.ts';

export const rateLimitFlags = {
  'limiter-rps': float({
    default: '2',
    help: 'requests per second per client, 0.01 to 1000000',
    runtime: true,
    // Below 0.01 a refused client waits minutes for one token (at 1e-320, for ever): the
    // admin who set it included, since the settings API is rate-limited too.
    rule: when((rps) => rps >= 0.01 && rps <= 1_000_000, 'must be between 0.01 and 1000000'),
  }),
  'limiter-burst': int({
    default: '4',
    help: 'burst per client, 1 to 1000000',
    runtime: true,
    // Bounded so that the value stays an exact integer wherever it is stored or compared.
    rule: when((burst) => burst >= 1 && burst <= 1_000_000, 'must be between 1 and 1000000'),
  }),
  'limiter-enabled': bool({ default: 'true', help: 'rate limiting on/off', runtime: true }),
  'limiter-per-user': bool({
    default: 'true',
    help: 'authenticated requests get a bucket per user instead of per IP',
  }),
  'limiter-address-ceiling': float({
    default: '4',
    help: 'with per-user buckets, an address gets at most this multiple of the rate and burst in all, however many accounts it uses',
    rule: when((n) => n >= 1, 'must be at least 1'),
  }),
};

export function rateLimitConfig(v: FlagValues<typeof rateLimitFlags>) {
  return {
    limiter: Object.freeze({
      rps: v['limiter-rps'],
      burst: v['limiter-burst'],
      enabled: v['limiter-enabled'],
    }),
    limiterPerUser: v['limiter-per-user'],
    limiterAddressCeiling: v['limiter-address-ceiling'],
  };
}
