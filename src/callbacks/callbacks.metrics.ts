// Prometheus metrics of the callback service, registered in the registry it is given (the
// serving process's, so GET /metrics shows them next to the API's).
import prom from 'prom-client';
import type { BreakerState, LookupOutcome } from './upstream.ts';

export type CallbackGauges = Readonly<{
  lookupsInFlight: () => number;
  backlog: () => Promise<{ callbacks: number; oldestSeconds: number }>;
  breakerState: () => BreakerState;
  objectsStored: () => Promise<number>;
}>;

const BREAKER_VALUES: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

export class CallbackMetrics {
  readonly requestDuration: prom.Histogram<'status'>;
  readonly received: prom.Counter;
  readonly rejected: prom.Counter<'reason'>;
  readonly idsReceived: prom.Counter;
  readonly lookups: prom.Counter<'outcome'>;
  readonly lookupDuration: prom.Histogram<'outcome'>;
  readonly breakerTransitions: prom.Counter<'state'>;
  readonly expired: prom.Counter;
  readonly abandoned: prom.Counter;

  constructor(registry: prom.Registry, gauges: CallbackGauges) {
    const registers = [registry];
    this.requestDuration = new prom.Histogram({
      name: 'greenlight_callback_request_duration_seconds',
      help: 'POST /callback answer time by status',
      labelNames: ['status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.received = new prom.Counter({
      name: 'greenlight_callbacks_received_total',
      help: 'Callbacks accepted and stored',
      registers,
    });
    this.rejected = new prom.Counter({
      name: 'greenlight_callbacks_rejected_total',
      help: 'Callbacks refused, by reason (invalid: 400; unavailable: the intake could not store it)',
      labelNames: ['reason'],
      registers,
    });
    this.idsReceived = new prom.Counter({
      name: 'greenlight_callback_ids_received_total',
      help: 'Object ids in accepted callbacks (as sent, repeats included)',
      registers,
    });
    this.lookups = new prom.Counter({
      name: 'greenlight_callback_lookups_total',
      help: 'Upstream lookup attempts by outcome (circuit_open: refused by the open breaker)',
      labelNames: ['outcome'],
      registers,
    });
    this.lookupDuration = new prom.Histogram({
      name: 'greenlight_callback_lookup_duration_seconds',
      help: 'Upstream lookup attempt duration by outcome',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10],
      registers,
    });
    this.breakerTransitions = new prom.Counter({
      name: 'greenlight_callback_breaker_transitions_total',
      help: 'Circuit breaker state changes, by the state entered',
      labelNames: ['state'],
      registers,
    });
    this.expired = new prom.Counter({
      name: 'greenlight_callback_objects_expired_total',
      help: 'Objects deleted by the sweep because they were not seen within the TTL',
      registers,
    });
    this.abandoned = new prom.Counter({
      name: 'greenlight_callback_ids_abandoned_total',
      help: 'Ids dropped unresolved because their callback became older than the TTL',
      registers,
    });
    registerGauges(registers, gauges);
  }

  lookupAttempted(outcome: LookupOutcome, seconds: number): void {
    this.lookups.inc({ outcome });
    this.lookupDuration.observe({ outcome }, seconds);
  }
}

// Read when scraped: what the service and the database hold now.
function registerGauges(registers: prom.Registry[], gauges: CallbackGauges): void {
  new prom.Gauge({
    name: 'greenlight_callback_lookups_in_flight',
    help: 'Distinct ids held by this process: being looked up, or waiting for their turn',
    registers,
    collect() {
      this.set(gauges.lookupsInFlight());
    },
  });
  new prom.Gauge({
    name: 'greenlight_callback_breaker_state',
    help: 'Upstream circuit breaker: 0 closed, 1 open, 2 half-open',
    registers,
    collect() {
      this.set(BREAKER_VALUES[gauges.breakerState()]);
    },
  });
  new prom.Gauge({
    name: 'greenlight_callback_backlog',
    help: 'Stored callbacks not yet fully processed (all instances)',
    registers,
    async collect() {
      this.set((await gauges.backlog()).callbacks);
    },
  });
  new prom.Gauge({
    name: 'greenlight_callback_backlog_age_seconds',
    help: 'Age of the oldest stored callback not yet fully processed',
    registers,
    async collect() {
      this.set((await gauges.backlog()).oldestSeconds);
    },
  });
  new prom.Gauge({
    name: 'greenlight_callback_objects_stored',
    help: 'Online objects currently stored',
    registers,
    async collect() {
      this.set(await gauges.objectsStored());
    },
  });
}
