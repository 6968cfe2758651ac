// Prometheus metrics of the payments client, in the registry it is given (the serving
// process's, so GET /metrics shows them next to the API's). Several clients may share one
// registry (a test's, or a process that builds a client per use): the second finds the
// first's metrics there and counts into them.
import prom from 'prom-client';

export type PaymentOperation = 'charge' | 'refund';
// A call's end; `retried` counts each attempt that is tried again.
export type CallOutcome = 'succeeded' | 'declined' | 'unavailable' | 'error';

export type PaymentMetrics = Readonly<{
  called: (operation: PaymentOperation, outcome: CallOutcome, seconds: number) => void;
  retried: (operation: PaymentOperation) => void;
  breakerChanged: (state: keyof typeof BREAKER_VALUES) => void;
}>;

const BREAKER_VALUES = { closed: 0, open: 1, half_open: 2 } as const;

function metric<T extends prom.Metric>(registry: prom.Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

export function paymentMetrics(registry: prom.Registry): PaymentMetrics {
  const registers = [registry];
  const calls = metric(
    registry,
    'greenlight_payment_calls_total',
    () =>
      new prom.Counter({
        name: 'greenlight_payment_calls_total',
        help: 'Payment provider calls by operation and outcome (retried: an attempt whose outcome was unknown, tried again with the same idempotency key)',
        labelNames: ['operation', 'outcome'],
        registers,
      }),
  );
  const duration = metric(
    registry,
    'greenlight_payment_call_duration_seconds',
    () =>
      new prom.Histogram({
        name: 'greenlight_payment_call_duration_seconds',
        help: 'Payment provider call duration, retries and their backoff included, by operation and outcome',
        labelNames: ['operation', 'outcome'],
        buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20],
        registers,
      }),
  );
  const breaker = metric(
    registry,
    'greenlight_payment_breaker_transitions_total',
    () =>
      new prom.Counter({
        name: 'greenlight_payment_breaker_transitions_total',
        help: "The payment provider circuit breaker's state changes, by the state entered",
        labelNames: ['state'],
        registers,
      }),
  );
  const breakerState = metric(
    registry,
    'greenlight_payment_breaker_state',
    () =>
      new prom.Gauge({
        name: 'greenlight_payment_breaker_state',
        help: 'The payment provider circuit breaker: 0 closed, 1 open, 2 half-open',
        registers,
      }),
  );
  breakerState.set(0);
  return {
    called: (operation, outcome, seconds) => {
      calls.inc({ operation, outcome });
      duration.observe({ operation, outcome }, seconds);
    },
    retried: (operation) => calls.inc({ operation, outcome: 'retried' }),
    breakerChanged: (state) => {
      breaker.inc({ state });
      breakerState.set(BREAKER_VALUES[state]);
    },
  };
}
