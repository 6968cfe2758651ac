// A collector's OTLP/HTTP endpoint in the test process, for tests of a traced `greenlight`:
// every span the service exports, with its scope and resource, to assert on trace ids and
// parent links.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { TestContext } from 'node:test';

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean };
type OtlpAttribute = { key: string; value: OtlpValue };
type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpAttribute[];
};
type OtlpRequest = {
  resourceSpans: {
    resource: { attributes: OtlpAttribute[] };
    scopeSpans: { scope: { name: string }; spans: OtlpSpan[] }[];
  }[];
};
export type ReceivedSpan = OtlpSpan & { scope: string; resource: Record<string, unknown> };

export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 };

function attributeValue(value: OtlpValue): unknown {
  return value.stringValue ?? value.intValue ?? value.boolValue;
}

export function attributes(list: OtlpAttribute[] = []): Record<string, unknown> {
  return Object.fromEntries(list.map((a) => [a.key, attributeValue(a.value)]));
}

// A collector's OTLP/HTTP endpoint: POST /v1/traces, JSON (the exporter's default encoding).
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly contentTypes: string[] = [];
  #server: Server | undefined;

  async start(): Promise<string> {
    this.#server = createServer((request, response) => {
      void this.#receive(request).then(
        () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
        () => response.writeHead(400).end(),
      );
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  async #receive(request: IncomingMessage): Promise<void> {
    assert.equal(`${request.method} ${request.url}`, 'POST /v1/traces');
    this.contentTypes.push(String(request.headers['content-type']));
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpRequest;
    for (const { resource, scopeSpans } of body.resourceSpans) {
      for (const { scope, spans } of scopeSpans) {
        for (const span of spans) {
          this.spans.push({ ...span, scope: scope.name, resource: attributes(resource.attributes) });
        }
      }
    }
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}

// A receiver stopped after the test; `endpoint` is what -otel-endpoint takes.
export async function startOtlpReceiver(
  t: TestContext,
): Promise<{ receiver: OtlpReceiver; endpoint: string }> {
  const receiver = new OtlpReceiver();
  const endpoint = await receiver.start();
  t.after(() => receiver.stop());
  return { receiver, endpoint };
}

// Whether `span` is `ancestor` or below it, by the parent ids among `spans`.
export function descendsFrom(
  span: ReceivedSpan,
  ancestor: ReceivedSpan,
  spans: readonly ReceivedSpan[],
): boolean {
  const byId = new Map(spans.filter((s) => s.traceId === span.traceId).map((s) => [s.spanId, s]));
  for (let s: ReceivedSpan | undefined = span; s; s = byId.get(s.parentSpanId ?? '')) {
    if (s.spanId === ancestor.spanId) return true;
  }
  return false;
}
