// Metrics of the gRPC listener, on the service's registry: calls by service, method and
// status code, and their durations (a stream's lasts until it ends).
import { Code } from '@connectrpc/connect';
import prom from 'prom-client';
import type { Metrics } from '../platform/metrics.ts';

export type GrpcMetrics = Readonly<{
  called: (service: string, method: string, code: Code, seconds: number) => void;
}>;

// One set per registry: tests build several apps on one Metrics.
const created = new WeakMap<Metrics, GrpcMetrics>();

// Code.Canceled → "CANCELED"… as gRPC writes them: "OK", "NOT_FOUND", "DEADLINE_EXCEEDED".
const CODE_NAMES = new Map<number, string>(
  Object.entries(Code)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([name, value]) => [value, name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()]),
);
CODE_NAMES.set(Code.Canceled, 'CANCELLED');

export function codeName(code: Code | 0): string {
  return code === 0 ? 'OK' : (CODE_NAMES.get(code) ?? String(code));
}

export function grpcMetrics(metrics: Metrics): GrpcMetrics {
  const found = created.get(metrics);
  if (found) return found;
  const registers = [metrics.registry];
  const requests = new prom.Counter({
    name: 'greenlight_grpc_requests_total',
    help: 'gRPC, gRPC-Web and Connect calls by service, method and status code',
    labelNames: ['service', 'method', 'code'],
    registers,
  });
  const duration = new prom.Histogram({
    name: 'greenlight_grpc_request_duration_seconds',
    help: 'gRPC call duration by service and method (a stream: until it ended)',
    labelNames: ['service', 'method'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const made: GrpcMetrics = {
    called: (service, method, code, seconds) => {
      requests.inc({ service, method, code: codeName(code) });
      duration.observe({ service, method }, seconds);
    },
  };
  created.set(metrics, made);
  return made;
}
