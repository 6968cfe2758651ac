// The rate limiter's buckets in Redis (-redis-url), so every instance charges one bucket per
// client. Each check is one Lua script, atomic in Redis: the same token bucket as
// rate-limit.ts (x/time/rate: refilled at rps, capped at burst), timed by Redis's own clock so
// the instances' clocks do not matter, kept only until it would be full again (an idle
// bucket is a full one, so it may as well not exist). When Redis fails or is slower than its
// command timeout, the request is checked against the process's own bucket instead.
import type { Redis as IORedis } from 'ioredis';
import { RateLimiter, type RateLimitSettings, type RateLimitStore, rateLimited } from './rate-limit.ts';
import type { RedisConnection, RedisFallback } from './redis.ts';

// KEYS[1] the bucket; ARGV rps, burst, and 1 to spend a token or 0 to only look.
// Returns {1 if a token was there, the tokens left as a string (Lua numbers would be truncated)}.
const TOKEN_BUCKET = `
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local spend = ARGV[3] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = burst
if bucket[1] then
  tokens = math.min(burst, tonumber(bucket[1]) + (now - tonumber(bucket[2])) / 1000 * rps)
end
local allowed = tokens >= 1
if spend then
  if allowed then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rps * 1000) + 1000)
end
return {allowed and 1 or 0, tostring(tokens)}
`;

type TokenBucketCommand = (
  key: string,
  rps: number,
  burst: number,
  spend: 0 | 1,
) => Promise<[number, string]>;

function tokenBucket(command: IORedis): TokenBucketCommand {
  const scripted = command as IORedis & { greenlightTokenBucket?: TokenBucketCommand };
  if (!scripted.greenlightTokenBucket)
    command.defineCommand('greenlightTokenBucket', { numberOfKeys: 1, lua: TOKEN_BUCKET });
  return (scripted.greenlightTokenBucket as TokenBucketCommand).bind(command);
}

export class RedisRateLimiter implements RateLimitStore {
  readonly #settings: RateLimitSettings;
  readonly #prefix: string;
  readonly #run: TokenBucketCommand;
  readonly #local: RateLimiter;
  readonly #fallback: RedisFallback;

  // `name` keeps limiters with the same client keys apart (the per-client buckets and the
  // address ceiling both use `ip:<address>`).
  constructor(redis: RedisConnection, name: string, settings: RateLimitSettings, fallback: RedisFallback) {
    this.#settings = settings;
    this.#prefix = `greenlight:ratelimit:${name}:`;
    this.#run = tokenBucket(redis.command);
    this.#local = new RateLimiter({ settings });
    this.#fallback = fallback;
  }

  take(key: string): Promise<void> {
    return this.#ask(key, 1);
  }

  check(key: string): Promise<void> {
    return this.#ask(key, 0);
  }

  async #ask(key: string, spend: 0 | 1): Promise<void> {
    const { rps, burst } = this.#settings;
    if (!this.#fallback.available()) return spend === 1 ? this.#local.take(key) : this.#local.check(key);
    let answer: [number, string];
    try {
      answer = await this.#run(this.#prefix + key, rps, burst, spend);
    } catch (err) {
      this.#fallback.failed(err);
      return spend === 1 ? this.#local.take(key) : this.#local.check(key);
    }
    this.#fallback.succeeded();
    if (answer[0] !== 1) throw rateLimited(Number(answer[1]), this.#settings);
  }
}
