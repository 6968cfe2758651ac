// A local OTLP/HTTP receiver for `--tracing`: it takes every export (POST /v1/traces) and
// discards it, counting requests and bytes, so the service pays the whole cost of tracing
// (spans, batching, serializing, sending) and the bench measures it.
import { createServer, type Server } from 'node:http';

export class OtlpSink {
  requests = 0;
  bytes = 0;
  #server: Server | undefined;

  async start(): Promise<string> {
    this.#server = createServer((request, response) => {
      request.on('data', (chunk: Buffer) => {
        this.bytes += chunk.length;
      });
      request.on('end', () => {
        this.requests++;
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
