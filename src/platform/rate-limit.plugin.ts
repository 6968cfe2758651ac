// Rate limiting as one plugin: the per-client limiter, the per-address ceiling, the store
// each lives in (this process, or Redis with -redis-url) and the onRequest hook that charges
// every request. The authentication hook, which runs before it, charges unknown tokens to the
// address through `addressBudget`.
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { RedisRateLimiter } from './rate-limit.redis.ts';
import { RateLimiter, type RateLimitSettings, type RateLimitStore } from './rate-limit.ts';
import { type RedisConnection, RedisFallback, type RedisMetrics } from './redis.ts';

// rps, burst and enabled are read at every request: the runtime settings change them.
export type LimitSettings = RateLimitSettings & { readonly enabled: boolean };

export type RateLimitDeps = Readonly<{
  config: Config;
  limits: LimitSettings;
  metrics: Metrics;
  logger: Logger;
  redis?: RedisConnection;
  redisMetrics?: RedisMetrics;
}>;

type Step = void | Promise<void>;

// Who a request comes from, as every transport knows it (a FastifyRequest is one).
export type Client = Readonly<{ ip: string; identity: Readonly<{ id: number }> | null }>;

// The local store answers at once and Redis's with a promise: a step waits only for that.
const andThen = (step: Step, next: () => Step): Step => (step instanceof Promise ? step.then(next) : next());

export class RequestLimits {
  readonly #deps: RateLimitDeps;
  readonly #limiter: RateLimitStore;
  readonly #ceiling: RateLimitStore | undefined;

  constructor(deps: RateLimitDeps) {
    this.#deps = deps;
    const { config, limits, logger, redis, redisMetrics } = deps;
    // Per-user buckets would let a client multiply its budget by opening accounts; every
    // request is also charged to its address's ceiling, a multiple of the per-user rate.
    const ceilingSettings: RateLimitSettings = {
      get rps() {
        return limits.rps * config.limiterAddressCeiling;
      },
      get burst() {
        return Math.ceil(limits.burst * config.limiterAddressCeiling);
      },
    };
    const fallback = redis && redisMetrics && new RedisFallback('limiter', logger, redisMetrics.fallbacks);
    const store = (name: string, settings: RateLimitSettings): RateLimitStore =>
      redis && fallback
        ? new RedisRateLimiter(redis, name, settings, fallback)
        : new RateLimiter({ settings });
    this.#limiter = store('client', limits);
    this.#ceiling = config.limiterPerUser ? store('ceiling', ceilingSettings) : undefined;
  }

  // Token lookups are paced by the client's address (see authenticationHook).
  readonly addressBudget = {
    check: (request: Pick<Client, 'ip'>): Step =>
      this.#deps.limits.enabled ? this.#limited(() => this.#limiter.check(`ip:${request.ip}`)) : undefined,
    charge: (request: Pick<Client, 'ip'>): Step =>
      this.#deps.limits.enabled ? this.#limited(() => this.#limiter.take(`ip:${request.ip}`)) : undefined,
  };

  // Fastify's callback form, not a promise: an async hook here made a 413 race the client's
  // upload (git log 07bae61), and most requests have nothing to wait for.
  readonly hook = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    if (!this.#deps.limits.enabled || request.routeOptions.config.rateLimit === false) {
      done();
      return;
    }
    let pending: Step;
    try {
      pending = this.#limit(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    if (pending) pending.then(() => done(), done);
    else done();
  };

  // The same charge for a call of another transport (gRPC).
  readonly limit = (client: Client): Step => (this.#deps.limits.enabled ? this.#limit(client) : undefined);

  #limit(request: Client): Step {
    const ceiling = this.#ceiling;
    const address = `ip:${request.ip}`;
    const key =
      this.#deps.config.limiterPerUser && request.identity ? `user:${request.identity.id}` : address;
    return andThen(ceiling && this.#limited(() => ceiling.check(address)), () =>
      andThen(
        this.#limited(() => this.#limiter.take(key)),
        () => (ceiling ? this.#limited(() => ceiling.take(address)) : undefined),
      ),
    );
  }

  // The local store answers synchronously and must not pay for a promise; Redis's does.
  #limited(act: () => Step): Step {
    try {
      const result = act();
      return result instanceof Promise ? result.catch((err) => this.#rejected(err)) : result;
    } catch (err) {
      return this.#rejected(err);
    }
  }

  #rejected(err: unknown): never {
    this.#deps.metrics.rateLimitRejections.inc();
    throw err;
  }
}

// Registered after the authentication hook, so that authenticated users are limited per user.
export const rateLimitPlugin = fp(
  async (app: FastifyInstance, { limits }: { limits: RequestLimits }) => {
    app.addHook('onRequest', limits.hook);
  },
  { name: 'rate-limit' },
);
