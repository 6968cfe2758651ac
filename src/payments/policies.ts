// How the payments client survives a provider that fails: each attempt bounded by the
// timeout, attempts whose outcome is unknown retried with exponential backoff and jitter,
// and a circuit breaker over the attempts of every call, so that a provider that is down is
// not hammered and callers learn at once that it is (cockatiel's policies, composed as its
// docs suggest: retry outermost, then the breaker, then the timeout of one attempt).
import {
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleType,
  retry,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
} from 'cockatiel';
import type { PaymentMetrics, PaymentOperation } from './payments.metrics.ts';

// An attempt after which nobody knows whether the provider applied it: retried.
export class UnknownOutcomeError extends Error {}

export type PolicyOptions = {
  // Tries per call, the first included.
  attempts?: number;
  retryInitialDelayMs?: number;
  retryMaxDelayMs?: number;
  // Consecutive attempts with an unknown outcome (across calls) that open the breaker, and
  // how long it then refuses calls before it lets one through as a probe.
  breakerThreshold?: number;
  halfOpenAfterMs?: number;
};

export const DEFAULT_POLICY: Required<PolicyOptions> = {
  attempts: 3,
  retryInitialDelayMs: 200,
  retryMaxDelayMs: 2_000,
  breakerThreshold: 5,
  halfOpenAfterMs: 10_000,
};

const BREAKER_STATES = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Isolated]: 'open',
} as const;

export function createPolicies(options: PolicyOptions & { timeoutMs: number }, metrics: PaymentMetrics) {
  const settings = Object.fromEntries(
    Object.entries(DEFAULT_POLICY).map(([name, value]) => [
      name,
      options[name as keyof PolicyOptions] ?? value,
    ]),
  ) as Required<PolicyOptions>;
  const breaker = circuitBreaker(handleType(UnknownOutcomeError), {
    halfOpenAfter: settings.halfOpenAfterMs,
    breaker: new ConsecutiveBreaker(settings.breakerThreshold),
  });
  breaker.onStateChange((state) => metrics.breakerChanged(BREAKER_STATES[state]));
  const perAttempt = timeout(options.timeoutMs, TimeoutStrategy.Aggressive);
  const backoff = new ExponentialBackoff({
    initialDelay: settings.retryInitialDelayMs,
    maxDelay: settings.retryMaxDelayMs,
  });
  return {
    // `attempt` is given the signal that ends it (its timeout, or `signal`). Rejects with the
    // last UnknownOutcomeError once the attempts are spent, BrokenCircuitError while the
    // breaker is open, `signal`'s reason once it aborts, or what an attempt threw otherwise.
    run<T>(
      operation: PaymentOperation,
      attempt: (signal: AbortSignal) => Promise<T>,
      signal: AbortSignal,
    ): Promise<T> {
      // One retry policy a call, so that its retries are counted under its operation.
      const retries = retry(handleType(UnknownOutcomeError), { maxAttempts: settings.attempts - 1, backoff });
      retries.onRetry(() => metrics.retried(operation));
      const bounded = (outer: AbortSignal) =>
        perAttempt
          .execute((context) => attempt(context.signal), outer)
          .catch((err: unknown) => {
            // The timeout policy reports the caller's abort as its own: it is not one.
            outer.throwIfAborted();
            throw err instanceof TaskCancelledError
              ? new UnknownOutcomeError(`no answer within ${options.timeoutMs} ms`, { cause: err })
              : err;
          });
      return retries.execute(
        (context) => breaker.execute(() => bounded(context.signal), context.signal),
        signal,
      );
    },
  };
}
