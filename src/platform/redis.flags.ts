// Flags of the optional Redis shared by the instances, and of the caches kept in it.
import { duration, type FlagValues, text, when } from './flags.ts';

export const redisFlags = {
  // Empty: no Redis; every feature that can use it works within the process.
  'redis-url': text({
    default: '',
    help: '`redis://` or `rediss://` URL of a Redis shared by the instances; empty: none (see Deployment)',
    secret: true,
    rule: when(
      (url) => url === '' || /^rediss?:\/\/[^\s]+$/.test(url),
      'must be a redis:// or rediss:// URL',
    ),
  }),
  'cache-ttl': duration({
    default: '1s',
    help: 'with `-redis-url`: lifetime of a cached movie or list (10ms-1h); changes invalidate at once, this bounds staleness only when an invalidation cannot reach Redis',
    rule: when((ms) => ms >= 10 && ms <= 3_600_000, 'must be between 10ms and 1h'),
  }),
};

export function redisConfig(v: FlagValues<typeof redisFlags>) {
  return { redisUrl: v['redis-url'], cacheTtlMs: v['cache-ttl'] };
}
