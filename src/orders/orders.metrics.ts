// Prometheus metrics of orders, registered once per registry (the serving process's, so GET
// /metrics shows them next to the API's). Provider calls are counted by the payments client.
import prom from 'prom-client';

export type OrderMetrics = Readonly<{
  // transitions into each status, placement (pending) included
  transitions: prom.Counter<'status'>;
  stepDuration: prom.Histogram<'step' | 'outcome'>;
}>;

const byRegistry = new WeakMap<prom.Registry, OrderMetrics>();

export function orderMetrics(registry: prom.Registry): OrderMetrics {
  const known = byRegistry.get(registry);
  if (known) return known;
  const registers = [registry];
  const metrics: OrderMetrics = {
    transitions: new prom.Counter({
      name: 'greenlight_orders_total',
      help: 'Orders entering each status (pending: placed)',
      labelNames: ['status'],
      registers,
    }),
    stepDuration: new prom.Histogram({
      name: 'greenlight_order_step_duration_seconds',
      help: 'Workflow step attempts by step and outcome (done, moved_on, failed)',
      labelNames: ['step', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
