// Flags of tracing. Both endpoints empty: tracing is off and nothing of OpenTelemetry is
// registered.
import { type FlagValues, float, text, when } from './flags.ts';

const httpUrl = when(
  (url: string) => url === '' || /^https?:\/\/[^/\s]+(\/\S*)?$/.test(url),
  'must be an http:// or https:// URL',
);

export const tracingFlags = {
  'otel-endpoint': text({
    default: '',
    help: 'OTLP/HTTP base URL spans are exported to (`/v1/traces` is appended, JSON encoding); empty: none. Tracing is off when this and `-zipkin-endpoint` are empty',
    rule: httpUrl,
  }),
  'otel-service-name': text({
    default: 'greenlight',
    help: '`service.name` of the spans',
    rule: when((name) => name.trim() !== '', 'must not be empty'),
  }),
  'otel-sample-ratio': float({
    default: '0.01',
    help: "share of requests (and other new traces) traced (0–1), decided before the request is read; a request with a `traceparent` follows its caller's sampled flag",
    rule: when((ratio) => ratio >= 0 && ratio <= 1, 'must be between 0 and 1'),
  }),
  'zipkin-endpoint': text({
    default: '',
    help: 'Zipkin span URL (`http://host:9411/api/v2/spans`) spans are also exported to',
    rule: httpUrl,
  }),
};

export function tracingConfig(v: FlagValues<typeof tracingFlags>) {
  return Object.freeze({
    // OTLP/HTTP base URL, without /v1/traces
    otlpEndpoint: v['otel-endpoint'].replace(/\/+$/, ''),
    // Zipkin's span endpoint, e.g. http://localhost:9411/api/v2/spans
    zipkinEndpoint: v['zipkin-endpoint'],
    serviceName: v['otel-service-name'],
    // Share of new traces sampled; a trace begun upstream keeps its caller's decision.
    sampleRatio: v['otel-sample-ratio'],
  });
}

export type TracingConfig = ReturnType<typeof tracingConfig>;
