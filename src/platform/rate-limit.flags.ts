// Flags of the rate limiter. Its rate, burst and on/off switch may change at run time: the
// limiter reads them on every request (settings/runtime.ts keeps them current).
import { bool, type FlagValues, float, int, when } from './flags.ts';

export const rateLimitFlags = {
  'limiter-rps': float({
    default: '2',
    help: 'requests per second per client',
    runtime: true,
    rule: when((rps) => rps > 0, 'must be greater than zero'),
  }),
  'limiter-burst': int({
    default: '4',
    help: 'burst per client',
    runtime: true,
    rule: when((burst) => burst >= 1, 'must be at least 1'),
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
