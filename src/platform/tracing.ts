// OpenTelemetry tracing: spans for incoming HTTP (both listeners), SQL, outbound HTTP (undici),
// jobs and mail, with W3C trace context accepted and propagated, exported over OTLP/HTTP and/or
// to Zipkin. Without an endpoint nothing of the SDK is even loaded: no provider, no context
// manager, no instrumentation, no log mixin, so tracing off costs nothing.
//
// startTracing must run before pg, node:http and undici are loaded: instrumentations patch
// modules as they are required (main.ts imports the commands only after it).
import { createRequire } from 'node:module';
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { FastifyInstance } from 'fastify';
import type { TracingConfig } from '../config.ts';
import { version } from '../version.ts';

let provider: { shutdown: () => Promise<void> } | undefined;

// Requests nobody wants a trace of: probes and scrapes, every few seconds.
const UNTRACED_PATHS = new Set(['/livez', '/readyz', '/metrics', '/debug/vars']);

export function tracingEnabled(): boolean {
  return provider !== undefined;
}

export async function startTracing(config: TracingConfig): Promise<void> {
  if (provider || (config.otlpEndpoint === '' && config.zipkinEndpoint === '')) return;
  const [
    { AsyncLocalStorageContextManager },
    { W3CTraceContextPropagator },
    { resourceFromAttributes },
    { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider },
    { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION },
    { registerInstrumentations },
    { HttpInstrumentation },
    { UndiciInstrumentation },
    { PgInstrumentation },
    { OTLPTraceExporter },
    { ZipkinExporter },
  ] = await Promise.all([
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/semantic-conventions'),
    import('@opentelemetry/instrumentation'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-undici'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/exporter-zipkin'),
  ]);
  const exporters = [
    ...(config.otlpEndpoint ? [new OTLPTraceExporter({ url: `${config.otlpEndpoint}/v1/traces` })] : []),
    ...(config.zipkinEndpoint
      ? [new ZipkinExporter({ url: config.zipkinEndpoint, serviceName: config.serviceName })]
      : []),
  ];
  const tracerProvider = new TracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: config.serviceName,
      [ATTR_SERVICE_VERSION]: version,
      'process.pid': process.pid,
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: exporters.map((exporter) => new BatchSpanProcessor({ exporter })),
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(tracerProvider);
  registerInstrumentations({
    tracerProvider,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.has((request.url ?? '').split('?')[0] ?? ''),
      }),
      new UndiciInstrumentation(),
      // Only SQL run for something traced: the job queue's and the callback service's polls
      // would otherwise be a trace each, several a second. No spans for taking a connection
      // from the pool: a third of a cached read's spans, and a wait for one shows anyway as
      // the gap before the query's span.
      new PgInstrumentation({ requireParentSpan: true, ignoreConnectSpans: true }),
    ],
  });
  // Require hooks see `require`, not ESM imports: our server (platform/http-server.ts) imports
  // node:http as ESM, so the patch of http.Server must not wait for a CommonJS module to load it.
  createRequire(import.meta.url)('node:http');
  provider = tracerProvider;
}

// Exports what is still buffered; the graceful shutdown calls it last.
export async function stopTracing(): Promise<void> {
  await provider?.shutdown();
  provider = undefined;
}

// node:http's server span knows only the method; Fastify knows the route once it has matched
// it, and the span is named after it (`GET /v1/movies/:id`). No hook while tracing is off.
export function nameSpansByRoute(app: FastifyInstance): void {
  if (!provider) return;
  app.addHook('onRequest', (request, _reply, done) => {
    const route = request.routeOptions.url;
    const span = trace.getActiveSpan();
    if (route && span) {
      span.updateName(`${request.method} ${route}`);
      span.setAttribute('http.route', route);
    }
    done();
  });
}

// Pino mixin: the active span's ids in every log line written inside it. Undefined (no mixin
// at all) while tracing is off. Pino merges the line into the object returned: a new one each time.
export function traceLogFields(): (() => object) | undefined {
  if (!provider) return undefined;
  return () => {
    const span = trace.getActiveSpan();
    if (!span) return {};
    const { traceId, spanId } = span.spanContext();
    return { trace_id: traceId, span_id: spanId };
  };
}

// A span of our own, for work no instrumentation sees (a job, an SMTP send), active while
// `work` runs. With tracing off the API's no-op tracer makes this a plain call.
export function inSpan<T>(
  name: string,
  options: { kind: SpanKind; attributes?: Attributes; parent?: Context },
  work: () => Promise<T>,
): Promise<T> {
  const tracer = trace.getTracer('greenlight', version);
  return tracer.startActiveSpan(
    name,
    { kind: options.kind, attributes: options.attributes },
    options.parent ?? context.active(),
    async (span) => {
      try {
        return await work();
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}
