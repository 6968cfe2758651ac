// OpenTelemetry tracing: spans for incoming HTTP (both listeners), SQL, outbound HTTP (undici),
// jobs and mail, with W3C trace context accepted and propagated, exported over OTLP/HTTP and/or
// to Zipkin. Without an endpoint nothing of OpenTelemetry is even loaded, not even its API: no
// provider, no context manager, no instrumentation, no log mixin, so tracing off costs nothing.
//
// startTracing must run before pg, node:http and undici are loaded: instrumentations patch
// modules as they are required (main.ts imports the commands only after it).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Attributes, Context, Sampler } from '@opentelemetry/api';
import type { TracingConfig } from '../config.ts';
import { version } from '../version.ts';

let provider: { shutdown: () => Promise<void> } | undefined;
// The OpenTelemetry API, loaded by the first startTracing.
let api: typeof import('@opentelemetry/api') | undefined;

// What sampleRequests decides with, set while tracing is on.
let door:
  | {
      ratio: number;
      context: typeof import('@opentelemetry/api')['context'];
      sampled: Context;
      unsampled: Context;
      callerSampled: (traceparent: string) => boolean | undefined;
    }
  | undefined;

// Requests nobody wants a trace of: probes and scrapes, every few seconds.
const UNTRACED_PATHS = new Set(['/livez', '/readyz', '/metrics', '/debug/vars']);

export function tracingEnabled(): boolean {
  return provider !== undefined;
}

export async function startTracing(config: TracingConfig): Promise<void> {
  if (provider || (config.otlpEndpoint === '' && config.zipkinEndpoint === '')) return;
  const modules = await loadOpenTelemetry();
  const { otel } = modules;
  api = otel;
  const { context, propagation, trace, ROOT_CONTEXT } = otel;
  const { AsyncLocalStorageContextManager } = modules.contextHooks;
  const { W3CTraceContextPropagator, parseTraceParent, suppressTracing } = modules.core;
  // Set on the context of a request sampleRequests let in without a caller's decision: the
  // coin was tossed there, so the root sampler keeps its trace instead of tossing again.
  const doorSampled = otel.createContextKey('greenlight request sampled at the door');
  const tracerProvider = createProvider(config, modules, doorSampled);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(tracerProvider);
  instrument(tracerProvider, modules);
  door = {
    ratio: config.sampleRatio,
    context,
    sampled: ROOT_CONTEXT.setValue(doorSampled, true),
    unsampled: suppressTracing(ROOT_CONTEXT),
    callerSampled: (traceparent) => {
      const parent = parseTraceParent(traceparent);
      return parent ? (parent.traceFlags & 1) === 1 : undefined;
    },
  };
  provider = tracerProvider;
}

// Loaded only when tracing is on (see the top of this file).
async function loadOpenTelemetry() {
  const [
    otel,
    contextHooks,
    core,
    resources,
    sdk,
    semconv,
    instrumentation,
    http,
    undici,
    pg,
    otlp,
    zipkin,
    fastify,
  ] = await Promise.all([
    import('@opentelemetry/api'),
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
    import('@fastify/otel'),
  ]);
  return {
    otel,
    contextHooks,
    core,
    resources,
    sdk,
    semconv,
    instrumentation,
    http,
    undici,
    pg,
    otlp,
    zipkin,
    fastify,
  };
}

type OpenTelemetry = Awaited<ReturnType<typeof loadOpenTelemetry>>;

function createProvider(
  config: TracingConfig,
  { otel, resources, sdk, semconv, otlp, zipkin }: OpenTelemetry,
  doorSampled: symbol,
) {
  const { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } = sdk;
  const exporters = [
    ...(config.otlpEndpoint ? [new otlp.OTLPTraceExporter({ url: `${config.otlpEndpoint}/v1/traces` })] : []),
    ...(config.zipkinEndpoint
      ? [new zipkin.ZipkinExporter({ url: config.zipkinEndpoint, serviceName: config.serviceName })]
      : []),
  ];
  return new TracerProvider({
    resource: resources.resourceFromAttributes({
      [semconv.ATTR_SERVICE_NAME]: config.serviceName,
      [semconv.ATTR_SERVICE_VERSION]: version,
      'process.pid': process.pid,
    }),
    sampler: new ParentBasedSampler({
      root: keepDoorSampled(new TraceIdRatioBasedSampler(config.sampleRatio), doorSampled, otel),
    }),
    spanProcessors: exporters.map((exporter) => new BatchSpanProcessor({ exporter })),
  });
}

function instrument(
  tracerProvider: ReturnType<typeof createProvider>,
  { otel, core, instrumentation, http, undici, pg, fastify }: OpenTelemetry,
): void {
  instrumentation.registerInstrumentations({
    tracerProvider,
    instrumentations: [
      // Incoming requests, on every Fastify instance (both listeners) from its creation: one
      // server span a request, named after its route once Fastify has matched it, and no
      // child spans for hooks and handlers (SQL and outbound calls are the children worth
      // seeing). Chosen over instrumentation-http's server side, which cost 40-50 µs of CPU a
      // request even unsampled (docs/decisions.md, "Tracing").
      new fastify.FastifyOtelInstrumentation({
        registerOnInitialization: true,
        instrumentHooks: false,
        instrumentHandler: false,
        // A request sampleRequests turned away runs with tracing suppressed: no span at all,
        // so nothing below it (SQL, outbound calls) makes one either.
        ignorePaths: ({ url }) =>
          core.isTracingSuppressed(otel.context.active()) || UNTRACED_PATHS.has(url.split('?')[0] ?? ''),
        requestHook: (span, request) => {
          const route = request.routeOptions.url;
          if (route) span.updateName(`${request.method} ${route}`);
        },
      }),
      // node:http only for outbound requests (the S3 client's); undici for fetch.
      new http.HttpInstrumentation({ disableIncomingRequestInstrumentation: true }),
      new undici.UndiciInstrumentation(),
      // Only SQL run for something traced: the job queue's and the callback service's polls
      // would otherwise be a trace each, several a second. No spans for taking a connection
      // from the pool: a third of a cached read's spans, and a wait for one shows anyway as
      // the gap before the query's span.
      new pg.PgInstrumentation({ requireParentSpan: true, ignoreConnectSpans: true }),
    ],
  });
}

// Exports what is still buffered; the graceful shutdown calls it last.
export async function stopTracing(): Promise<void> {
  await provider?.shutdown();
  provider = undefined;
  door = undefined;
}

// Head sampling before Fastify sees the request. Deciding only when the server span starts
// (the SDK's sampler) leaves every unsampled request paying for a non-recording span, its
// context and a non-recording child for each query: 20 µs of CPU on S2's 85 (docs/decisions.md,
// "Tracing"). Here the caller's traceparent decides, as the parent-based sampler would, and a
// request without one is kept with -otel-sample-ratio's probability; the rest run with
// tracing suppressed and cost one context switch. While tracing is off the handler is
// returned as is.
export function sampleRequests(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  // Servers are built after startTracing (main.ts), so tracing off means no wrapper at all.
  const decide = door;
  if (!decide) return handler;
  return (req, res) => {
    const traceparent = req.headers.traceparent;
    const sampled =
      (typeof traceparent === 'string' ? decide.callerSampled(traceparent) : undefined) ??
      Math.random() < decide.ratio;
    decide.context.with(sampled ? decide.sampled : decide.unsampled, () => handler(req, res));
  };
}

// New traces of requests let in at the door are kept; other new traces (scheduled jobs,
// background work) are sampled by `byRatio`.
function keepDoorSampled(
  byRatio: Sampler,
  doorSampled: symbol,
  { SamplingDecision }: typeof import('@opentelemetry/api'),
): Sampler {
  return {
    shouldSample: (ctx, traceId, spanName, spanKind, attributes, links) =>
      ctx.getValue(doorSampled) === true
        ? { decision: SamplingDecision.RECORD_AND_SAMPLED }
        : byRatio.shouldSample(ctx, traceId, spanName, spanKind, attributes, links),
    toString: () => `KeepDoorSampled{${byRatio.toString()}}`,
  };
}

// Pino mixin: the active span's ids in every log line written inside it. Undefined (no mixin
// at all) while tracing is off. Pino merges the line into the object returned: a new one each time.
export function traceLogFields(): (() => object) | undefined {
  if (!provider || !api) return undefined;
  const { trace } = api;
  return () => {
    const span = trace.getActiveSpan();
    if (!span) return {};
    const { traceId, spanId } = span.spanContext();
    return { trace_id: traceId, span_id: spanId };
  };
}

// W3C trace context carried by a message that has no headers of its own (a job's data).
export type TraceCarrier = Readonly<Record<string, string>>;

// The active trace context as a carrier; empty while tracing was never started.
export function currentTraceContext(): TraceCarrier {
  const carrier: Record<string, string> = {};
  if (api) api.propagation.inject(api.context.active(), carrier);
  return carrier;
}

// The W3C trace context (traceparent, tracestate) a call or a message carried in its headers.
export function traceCarrierOf(header: (name: string) => unknown): TraceCarrier {
  const carrier: Record<string, string> = {};
  for (const name of ['traceparent', 'tracestate']) {
    const value = header(name);
    if (typeof value === 'string' && value !== '') carrier[name] = value;
  }
  return carrier;
}

// What a span of our own is to its peer: the API's SpanKind, named, so that callers need not
// load the API to say it.
export type OwnSpanKind = 'CLIENT' | 'CONSUMER' | 'INTERNAL' | 'PRODUCER' | 'SERVER';

// A span of our own, for work no instrumentation sees (a job, an SMTP send, a gRPC call, a
// broker message), active while
// `work` runs: the child of the active span, or with `from`, of the trace context a message
// carried (a new trace when it carries none). Before tracing was ever started this is a plain
// call (what the API's no-op tracer would make of it, without loading the API).
export function inSpan<T>(
  name: string,
  options: { kind: OwnSpanKind; attributes?: Attributes; from?: TraceCarrier },
  work: () => Promise<T>,
): Promise<T> {
  if (!api) return work();
  const { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } = api;
  const parent: Context = options.from ? propagation.extract(ROOT_CONTEXT, options.from) : context.active();
  const tracer = trace.getTracer('greenlight', version);
  return tracer.startActiveSpan(
    name,
    { kind: SpanKind[options.kind], attributes: options.attributes },
    parent,
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
