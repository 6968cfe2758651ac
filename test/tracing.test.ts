// Tracing: the service started as the operator runs it, exporting to a real OTLP/HTTP receiver
// in this process. One registration (HTTP → SQL → mail job → SMTP) must arrive as one trace
// with its parent ids joined up; an incoming traceparent is honoured; log lines carry the ids.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, type TestContext, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { readSettings, readTracingConfig } from '../src/config.ts';
import { startTracing, tracingEnabled } from '../src/platform/tracing.ts';
import { buildTestApp, createTestDatabase, waitFor } from './helpers.ts';
import { attributes, descendsFrom, SPAN_KIND, startOtlpReceiver } from './otlp-receiver.ts';
import { freePort, greenlight, startServer } from './processes.ts';
import { SmtpSink } from './smtp-sink.ts';

type ZipkinSpan = {
  traceId: string;
  id: string;
  parentId?: string;
  name: string;
  localEndpoint: { serviceName: string };
};

// Zipkin's span endpoint: POST /api/v2/spans, a JSON array of spans.
async function startZipkin(t: TestContext): Promise<{ url: string; spans: ZipkinSpan[] }> {
  const spans: ZipkinSpan[] = [];
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    if (request.url === '/api/v2/spans')
      spans.push(...(JSON.parse(Buffer.concat(chunks).toString()) as ZipkinSpan[]));
    response.writeHead(202).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v2/spans`, spans };
}

// A server tracing to a fresh OTLP receiver, mailing to a fresh SMTP sink.
async function startTracedServer(t: TestContext, flags: string[]) {
  const { receiver, endpoint } = await startOtlpReceiver(t);
  const smtp = new SmtpSink();
  await smtp.start();
  t.after(() => smtp.stop());
  const server = await startServer(t, [
    '-db-dsn',
    await createTestDatabase(),
    '-otel-endpoint',
    endpoint,
    '-smtp-host',
    '127.0.0.1',
    '-smtp-port',
    String(smtp.port),
    ...flags,
  ]);
  const base = `http://127.0.0.1:${server.port}`;
  // Registers a user and waits for the welcome mail to be sent.
  const register = async (email: string, headers: Record<string, string> = {}) => {
    const sent = server.logs.filter((l) => l.msg === 'email sent').length;
    const registered = await fetch(`${base}/v1/users`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'Traced User', email, password: 'pa55word' }),
    });
    assert.equal(registered.status, 202);
    await smtp.waitFor(email);
    await waitFor('the mail sent', () => server.logs.filter((l) => l.msg === 'email sent').length > sent);
  };
  return { receiver, smtp, server, base, register };
}

describe('tracing', () => {
  test('when a user registers, then the request, its SQL, the mail job and the SMTP send are one trace', async (t) => {
    const zipkin = await startZipkin(t);
    const { receiver, smtp, server, base, register } = await startTracedServer(t, [
      '-zipkin-endpoint',
      zipkin.url,
      '-otel-service-name',
      'greenlight-test',
      '-otel-sample-ratio',
      '1',
    ]);
    await register(`traced-${Date.now()}@example.com`);

    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const health = await fetch(`${base}/v1/healthcheck`, {
      headers: { traceparent: `00-${callerTrace}-${callerSpan}-01` },
    });
    assert.equal(health.status, 200);

    // The graceful shutdown exports what is still buffered.
    server.child.kill('SIGTERM');
    assert.deepEqual(await server.waitForExit(15_000), { code: 0, signal: null });

    const { spans } = receiver;
    assert.ok(receiver.contentTypes.every((type) => type.startsWith('application/json')));
    assert.ok(spans.every((span) => span.resource['service.name'] === 'greenlight-test'));

    const request = spans.find((s) => s.kind === SPAN_KIND.server && s.name === 'POST /v1/users');
    assert.ok(request, `no server span for the registration in ${spans.map((s) => s.name).join(', ')}`);
    assert.equal(attributes(request.attributes)['http.route'], '/v1/users');
    assert.ok(!request.parentSpanId, 'a request without traceparent starts a trace');
    const inTrace = spans.filter((s) => s.traceId === request.traceId);

    const sql = inTrace.filter(
      (s) => s.scope === '@opentelemetry/instrumentation-pg' && s.kind === SPAN_KIND.client,
    );
    const statements = sql.map((s) => String(attributes(s.attributes)['db.query.text'] ?? ''));
    assert.ok(
      statements.some((text) => /INSERT INTO users/i.test(text)),
      `no INSERT INTO users among ${statements.join(' | ')}`,
    );
    assert.ok(
      statements.some((text) => /pgboss/i.test(text)),
      'the job is enqueued by SQL in the request',
    );
    for (const span of sql)
      assert.ok(descendsFrom(span, request, spans), `${span.name} is not under the request`);

    const job = inTrace.find((s) => s.name === 'send-email process');
    assert.ok(job, 'the mail job joins the trace of the request that enqueued it');
    assert.equal(job.kind, SPAN_KIND.consumer);
    assert.equal(job.parentSpanId, request.spanId);
    assert.equal(attributes(job.attributes)['messaging.destination.name'], 'send-email');
    const send = inTrace.find((s) => s.name === 'smtp send');
    assert.ok(send, 'the SMTP send has a span');
    assert.equal(send.parentSpanId, job.spanId);
    assert.equal(Number(attributes(send.attributes)['server.port']), smtp.port);

    const zipkinJob = zipkin.spans.find((s) => s.id === job.spanId);
    assert.ok(zipkinJob, 'Zipkin receives the same spans');
    assert.deepEqual(
      [zipkinJob.traceId, zipkinJob.parentId, zipkinJob.localEndpoint.serviceName],
      [request.traceId, request.spanId, 'greenlight-test'],
    );

    const honoured = spans.find((s) => s.kind === SPAN_KIND.server && s.name === 'GET /v1/healthcheck');
    assert.ok(honoured);
    assert.equal(honoured.traceId, callerTrace);
    assert.equal(honoured.parentSpanId, callerSpan);

    const requestLog = server.logs.find((l) => l.path === '/v1/users' && l.status === 202);
    assert.ok(requestLog, 'the request was logged');
    assert.equal(requestLog.trace_id, request.traceId);
    assert.equal(requestLog.span_id, request.spanId);
    const sentLog = server.logs.find((l) => l.msg === 'email sent');
    assert.equal(sentLog?.trace_id, request.traceId);
    assert.equal(sentLog?.span_id, job.spanId);
    const healthLog = server.logs.find((l) => l.path === '/v1/healthcheck');
    assert.equal(healthLog?.trace_id, callerTrace);
  });

  test('when a request is not sampled, then nothing of it is exported, while a sampled caller is still followed', async (t) => {
    const { receiver, server, base, register } = await startTracedServer(t, ['-otel-sample-ratio', '0']);
    // Dropped by the ratio: the request, its SQL and the mail job it enqueues.
    await register(`unsampled-${Date.now()}@example.com`);
    // Dropped by the caller's decision, and kept by it whatever the ratio.
    const dropped = await fetch(`${base}/v1/healthcheck`, {
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' },
    });
    assert.equal(dropped.status, 200);
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    await register(`sampled-${Date.now()}@example.com`, {
      traceparent: `00-${callerTrace}-00f067aa0ba902b7-01`,
    });

    server.child.kill('SIGTERM');
    assert.deepEqual(await server.waitForExit(15_000), { code: 0, signal: null });
    const { spans } = receiver;
    assert.ok(
      spans.some(
        (s) => s.kind === SPAN_KIND.server && s.name === 'POST /v1/users' && s.traceId === callerTrace,
      ),
      'the sampled caller has its server span',
    );
    assert.ok(
      spans.some((s) => s.scope === '@opentelemetry/instrumentation-pg' && s.traceId === callerTrace),
      'and its SQL',
    );
    assert.ok(
      spans.some((s) => s.name === 'send-email process' && s.traceId === callerTrace),
      'and its job',
    );
    assert.deepEqual(
      spans.filter((s) => s.traceId !== callerTrace).map((s) => s.name),
      [],
      'no span of the unsampled requests or of their job',
    );
    const unsampledLog = server.logs.find((l) => l.path === '/v1/users' && l.trace_id !== callerTrace);
    assert.ok(unsampledLog, 'the unsampled request is logged');
    assert.equal('trace_id' in unsampledLog, false);
  });

  test('when the callback service looks an object up, then the upstream receives the traceparent of the exported client span', async (t) => {
    const { receiver, endpoint } = await startOtlpReceiver(t);
    const traceparents: string[] = [];
    const upstream = createServer((request, response) => {
      traceparents.push(String(request.headers.traceparent));
      const id = Number(request.url?.split('/').pop());
      response.writeHead(200, { 'content-type': 'text/plain' }).end(JSON.stringify({ id, online: true }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const upstreamPort = (upstream.address() as { port: number }).port;
    const port = await freePort();
    const callbacks = greenlight(t, [
      'callbacks',
      '-env',
      'development',
      '-db-dsn',
      await createTestDatabase(),
      '-callbacks-addr',
      `127.0.0.1:${port}`,
      '-callbacks-upstream',
      `http://127.0.0.1:${upstreamPort}`,
      '-otel-endpoint',
      endpoint,
      '-otel-sample-ratio',
      '1',
    ]);
    await callbacks.waitForLog('callback service started');

    const posted = await fetch(`http://127.0.0.1:${port}/callback`, {
      method: 'POST',
      body: JSON.stringify({ object_ids: [7] }),
    });
    assert.equal(posted.status, 200);
    await waitFor('the lookup to reach the upstream', () => traceparents.length > 0);
    callbacks.child.kill('SIGTERM');
    assert.deepEqual(await callbacks.waitForExit(15_000), { code: 0, signal: null });

    const [, traceId, spanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traceparents[0] ?? '') ?? [];
    assert.ok(traceId && spanId, `not a sampled traceparent: ${traceparents[0]}`);
    const lookup = receiver.spans.find((s) => s.spanId === spanId);
    assert.ok(lookup, 'the span whose context was sent is exported');
    assert.equal(lookup.traceId, traceId);
    assert.equal(lookup.kind, SPAN_KIND.client);
    assert.equal(lookup.scope, '@opentelemetry/instrumentation-undici');
    assert.equal(attributes(lookup.attributes)['url.full'], `http://127.0.0.1:${upstreamPort}/objects/7`);
    assert.ok(receiver.spans.some((s) => s.kind === SPAN_KIND.server && s.name === 'POST /callback'));
  });

  test('when no endpoint is set, then no tracer provider, context manager or instrumentation is registered', async () => {
    const config = readTracingConfig(readSettings([], {}));
    await startTracing(config);
    assert.equal(tracingEnabled(), false);
    const tracer = trace.getTracer('probe');
    const span = tracer.startSpan('probe');
    assert.equal(span.isRecording(), false);
    assert.equal(span.spanContext().traceId, '00000000000000000000000000000000');
    span.end();
    const { api, lines } = await buildTestApp();
    assert.equal((await api('/v1/movies')).statusCode, 200);
    const http = await import('node:http');
    assert.equal((http.Server.prototype.emit as { __wrapped?: boolean }).__wrapped, undefined);
    const logged = lines.find((l) => l.path === '/v1/movies');
    assert.ok(logged);
    assert.equal('trace_id' in logged, false);
  });

  test('when a tracing flag is out of range, then the process refuses to start naming it', () => {
    const read = (argv: string[]) => () => readTracingConfig(readSettings(argv, {}));
    assert.throws(
      read(['-otel-sample-ratio', '1.5']),
      /invalid -otel-sample-ratio \(GREENLIGHT_OTEL_SAMPLE_RATIO\): must be between 0 and 1/,
    );
    assert.throws(read(['-otel-endpoint', 'localhost:4318']), /invalid -otel-endpoint .*http:\/\//);
    assert.throws(read(['-zipkin-endpoint', 'ftp://zipkin']), /invalid -zipkin-endpoint/);
    assert.throws(read(['-otel-service-name', ' ']), /invalid -otel-service-name/);
    assert.deepEqual(read(['-otel-endpoint', 'http://collector:4318/', '-otel-sample-ratio', '0.25'])(), {
      otlpEndpoint: 'http://collector:4318',
      zipkinEndpoint: '',
      serviceName: 'greenlight',
      sampleRatio: 0.25,
    });
    assert.equal(read(['-otel-endpoint', 'http://collector:4318'])().sampleRatio, 0.01, 'one request in 100');
  });
});
