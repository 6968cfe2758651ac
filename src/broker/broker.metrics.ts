// Prometheus metrics of the broker module, in the serving process's registry (GET /metrics).
import prom from 'prom-client';

export type CommandResult = 'applied' | 'duplicate' | 'dead' | 'retry';

export class BrokerMetrics {
  readonly published: prom.Counter<'exchange'>;
  readonly publishFailures: prom.Counter<'exchange'>;
  readonly lag: prom.Histogram<'topic'>;
  readonly commands: prom.Counter<'type' | 'outcome'>;
  readonly leader: prom.Gauge;

  constructor(registry: prom.Registry) {
    const registers = [registry];
    this.published = new prom.Counter({
      name: 'greenlight_broker_published_total',
      help: 'Domain events published and confirmed by the broker',
      labelNames: ['exchange'],
      registers,
    });
    this.publishFailures = new prom.Counter({
      name: 'greenlight_broker_publish_failures_total',
      help: 'Batches of events the broker did not confirm (sent again after a backoff)',
      labelNames: ['exchange'],
      registers,
    });
    this.lag = new prom.Histogram({
      name: 'greenlight_broker_publish_lag_seconds',
      help: "Time from an event's write (its created_at, to the second) to the broker's confirm",
      labelNames: ['topic'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    });
    this.commands = new prom.Counter({
      name: 'greenlight_broker_commands_total',
      help: 'Commands taken from the command queue, by type and outcome (applied, duplicate, dead, retry)',
      labelNames: ['type', 'outcome'],
      registers,
    });
    this.leader = new prom.Gauge({
      name: 'greenlight_broker_relay_leader',
      help: '1 while this process is the one relaying the outboxes to the broker',
      registers,
    });
  }
}
