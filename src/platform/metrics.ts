// Operational metrics: the book's expvar counters at GET /debug/vars, and Prometheus text
// at GET /metrics. Both are for operators: loopback clients (configurable) or users holding
// metrics:view; everyone else gets the usual 401/403.
import prom from 'prom-client';
import { redactArgv } from '../config.ts';
import type { Db } from './db.ts';
import type { Jobs } from './jobs.ts';

const UNKNOWN_QUEUE_STATS = { queuedCount: Number.NaN, activeCount: Number.NaN, deferredCount: Number.NaN };

export type MetricsSources = Readonly<{
  db: Db;
  maxOpenConns: number;
  jobs?: Jobs;
  queues?: readonly string[];
}>;

export class Metrics {
  totalRequestsReceived = 0;
  totalResponsesSent = 0;
  totalProcessingTimeMicros = 0;
  readonly responsesByStatus: Record<string, number> = {};
  readonly registry = new prom.Registry();
  readonly #duration: prom.Histogram<'method' | 'route' | 'status'>;
  readonly rateLimitRejections: prom.Counter;
  readonly jobFailures: prom.Counter<'queue'>;
  readonly connectionsRefused: prom.Counter<'reason'>;
  readonly clientErrors: prom.Counter<'status'>;
  readonly streamsOpen: prom.Gauge<'transport'>;
  readonly streamsEnded: prom.Counter<'transport' | 'reason'>;
  readonly #sources: MetricsSources;

  constructor(sources: MetricsSources) {
    this.#sources = sources;
    const registers = [this.registry];
    prom.collectDefaultMetrics({ register: this.registry });
    this.#duration = new prom.Histogram({
      name: 'greenlight_http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.rateLimitRejections = new prom.Counter({
      name: 'greenlight_rate_limit_rejections_total',
      help: 'Requests refused with 429',
      registers,
    });
    this.jobFailures = new prom.Counter({
      name: 'greenlight_job_failures_total',
      help: 'Background job attempts that failed',
      labelNames: ['queue'],
      registers,
    });
    this.connectionsRefused = new prom.Counter({
      name: 'greenlight_connections_refused_total',
      help: 'Client connections closed at once for being over -max-connections-per-ip or -max-connections',
      labelNames: ['reason'],
      registers,
    });
    this.clientErrors = new prom.Counter({
      name: 'greenlight_http_client_errors_total',
      help: 'Requests refused before routing: malformed HTTP, header or request timeout, oversized headers',
      labelNames: ['status'],
      registers,
    });
    this.streamsOpen = new prom.Gauge({
      name: 'greenlight_streams_open',
      help: 'Open change streams (SSE, WebSocket and gRPC clients) of this process',
      labelNames: ['transport'],
      registers,
    });
    this.streamsEnded = new prom.Counter({
      name: 'greenlight_streams_ended_total',
      help: 'Change streams ended, by why: closed, slow_consumer, revoked, unresponsive, shutdown, error',
      labelNames: ['transport', 'reason'],
      registers,
    });
    const pool = sources.db;
    new prom.Gauge({
      name: 'greenlight_db_pool_connections',
      help: 'Database pool connections by state',
      labelNames: ['state'],
      registers,
      collect() {
        this.set({ state: 'open' }, pool.totalCount);
        this.set({ state: 'idle' }, pool.idleCount);
        this.set({ state: 'in_use' }, pool.totalCount - pool.idleCount);
        this.set({ state: 'waiting' }, pool.waitingCount);
      },
    });
    const { jobs, queues = [] } = sources;
    if (jobs) {
      new prom.Gauge({
        name: 'greenlight_job_queue_depth',
        help: 'Background jobs waiting or running, by queue',
        labelNames: ['queue', 'state'],
        registers,
        // While the database is away the depths read NaN, and /metrics still answers: one
        // failing collector would otherwise fail the whole scrape (503), the pool and outage
        // counters with it, when they are most wanted.
        async collect() {
          for (const queue of queues) {
            const stats = await jobs.getQueueStats(queue).catch(() => UNKNOWN_QUEUE_STATS);
            this.set({ queue, state: 'queued' }, stats.queuedCount);
            this.set({ queue, state: 'active' }, stats.activeCount);
            this.set({ queue, state: 'deferred' }, stats.deferredCount);
          }
        },
      });
    }
  }

  requestReceived(): void {
    this.totalRequestsReceived++;
  }

  responseSent(method: string, route: string, status: number, seconds: number): void {
    this.totalResponsesSent++;
    this.totalProcessingTimeMicros += Math.round(seconds * 1e6);
    this.responsesByStatus[status] = (this.responsesByStatus[status] ?? 0) + 1;
    this.#duration.observe({ method, route, status: String(status) }, seconds);
  }

  // The book's /debug/vars document. Go-only values get their nearest Node equivalents:
  // goroutines → active libuv handles and requests; memstats → process.memoryUsage();
  // database → node-postgres pool counters under Go's sql.DBStats names.
  debugVars(version: string): Record<string, unknown> {
    const pool = this.#sources.db;
    const memory = process.memoryUsage();
    return {
      cmdline: redactSecrets(process.argv),
      database: {
        MaxOpenConnections: this.#sources.maxOpenConns,
        OpenConnections: pool.totalCount,
        InUse: pool.totalCount - pool.idleCount,
        Idle: pool.idleCount,
        WaitCount: pool.stats.waitCount,
        // nanoseconds, as Go's time.Duration is encoded
        WaitDuration: pool.stats.waitNanoseconds,
        // node-postgres has no cap on idle connections nor a lifetime limit here, so Go's
        // counters for those stay at zero; idle-time closes are counted.
        MaxIdleClosed: 0,
        MaxIdleTimeClosed: pool.stats.idleTimeClosed,
        MaxLifetimeClosed: 0,
      },
      goroutines: process.getActiveResourcesInfo().length,
      memstats: {
        Alloc: memory.heapUsed,
        HeapAlloc: memory.heapUsed,
        HeapSys: memory.heapTotal,
        Sys: memory.rss,
        External: memory.external,
        ArrayBuffers: memory.arrayBuffers,
      },
      timestamp: Math.floor(Date.now() / 1000),
      total_processing_time_μs: this.totalProcessingTimeMicros,
      total_requests_received: this.totalRequestsReceived,
      total_responses_sent: this.totalResponsesSent,
      total_responses_sent_by_status: this.responsesByStatus,
      version,
    };
  }

  prometheus(): Promise<string> {
    return this.registry.metrics();
  }
}

// The command line as /debug/vars shows it: values of flags declared secret (config.ts)
// are "REDACTED", and so are the credentials of any URL.
export function redactSecrets(argv: readonly string[]): string[] {
  return redactArgv(argv);
}

export function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');
}
