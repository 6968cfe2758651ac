// The event relay across real processes and a real rabbitmq-server: two `greenlight serve`
// instances on one database, one relaying. A burst of 10,000 imported movies and interleaved
// updates reaches a consumer's queue whole (exactly once per message id after deduplication,
// in commit order per movie) although the broker is killed and restarted in the middle and the
// relaying instance is SIGKILLed; the other takes over. Publish latency is logged, not asserted.
// A traced server, exporting to an OTLP receiver, carries W3C trace context both ways: a
// command's traceparent is the parent of its span, and each event published carries the
// trace context of the change that wrote it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startPaymentsStandIn } from '../src/payments/stand-in.ts';
import { createPool } from '../src/platform/db.ts';
import { collect, connect, type Received, sendCommands } from './broker-clients.ts';
import { createTestDatabase, createUser, waitFor } from './helpers.ts';
import { descendsFrom, type ReceivedSpan, SPAN_KIND, startOtlpReceiver } from './otlp-receiver.ts';
import { kill, startServer } from './processes.ts';
import { startRabbitmqServer } from './rabbitmq-server.ts';

const rabbit = await startRabbitmqServer();
const client = connect(rabbit.url);

const metricsOf = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
const isLeader = async (port: number) => (await metricsOf(port)).includes('greenlight_broker_relay_leader 1');

const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

// The first arrival of each message id, in arrival order.
function deduplicated(messages: readonly Received[]): Received[] {
  const seen = new Set<string>();
  return messages.filter((m) => !seen.has(m.messageId) && seen.add(m.messageId));
}

test('when 10,000 movies are imported and updated while the broker restarts and the relaying instance is SIGKILLed, then every event arrives once per id, in commit order per movie', async (t) => {
  const events = await collect(client, 'test-burst');
  const dsn = await createTestDatabase();
  const flags = ['-db-dsn', dsn, '-amqp-url', rabbit.url, '-amqp-relay-poll', '100ms'];
  const servers = await Promise.all([startServer(t, flags), startServer(t, flags)]);
  const leaderIndex = await waitFor('a relay leader', async () => {
    const leading = await Promise.all(servers.map((s) => isLeader(s.port)));
    return leading.indexOf(true) >= 0 ? leading.indexOf(true) : undefined;
  });
  const leader = servers[leaderIndex] as (typeof servers)[number];
  const survivor = servers[1 - leaderIndex] as (typeof servers)[number];
  const db = createPool({ dsn, maxOpenConns: 2, maxIdleTimeMs: 60_000, queryTimeoutMs: 10_000 });
  t.after(() => db.end());
  const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
  const base = `http://127.0.0.1:${survivor.port}`;
  const headers = { authorization: `Bearer ${token}` };

  // Writes go to the survivor: when each returned (its commit), for the latency.
  const committedAt = new Map<number, number>();
  const importChunk = async (n: number) => {
    const rows = Array.from({ length: 1000 }, (_, i) =>
      JSON.stringify({ title: `Burst ${n}-${i}`, year: 2000, runtime: '90 mins', genres: ['drama'] }),
    );
    const res = await fetch(`${base}/v1/movies/import`, { method: 'POST', headers, body: rows.join('\n') });
    assert.equal(res.status, 200, await res.text());
  };
  const updated: number[] = [];
  const updateSome = async (from: number, timed = false) => {
    for (let i = 0; i < 20; i++) {
      const id = from + i;
      const res = await fetch(`${base}/v1/movies/${id}`, {
        method: 'PATCH',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ year: 2001 + (updated.length % 20) }),
      });
      assert.equal(res.status, 200, await res.text());
      if (timed) committedAt.set(id, Date.now());
      updated.push(id);
    }
  };
  const firstId = async () => Number((await db.query('SELECT min(id) AS id FROM movies')).rows[0].id);

  for (let n = 0; n < 3; n++) await importChunk(n);
  const low = await firstId();
  await updateSome(low);
  // The broker dies mid-burst: the service keeps taking writes, the relay retries.
  await rabbit.stop();
  for (let n = 3; n < 5; n++) await importChunk(n);
  for (const server of servers) {
    assert.equal(
      (await fetch(`http://127.0.0.1:${server.port}/readyz`)).status,
      200,
      'ready without the broker',
    );
  }
  await updateSome(low);
  await rabbit.start();
  for (let n = 5; n < 7; n++) await importChunk(n);
  // The relaying instance dies mid-publish: the survivor takes over from the durable cursor.
  await kill(leader);
  for (let n = 7; n < 10; n++) await importChunk(n);
  await updateSome(low + 20);
  await waitFor('the survivor to take over the relay', () => isLeader(survivor.port), 30_000);

  const { rows } = await db.query<{ id: string; movie_id: string }>(
    'SELECT id::text, movie_id::text FROM movie_events ORDER BY xid, id',
  );
  assert.equal(rows.length, 10_060);
  const expected = new Set(rows.map((row) => `movies-${row.id}`));
  await waitFor(
    `all ${expected.size} events`,
    () => new Set(events.messages.map((m) => m.messageId)).size >= expected.size,
    120_000,
  );
  const unique = deduplicated(events.messages);
  assert.deepEqual(new Set(unique.map((m) => m.messageId)), expected);
  // Per movie, the versions arrive in the order they were committed.
  const versions = new Map<number, number[]>();
  for (const m of unique) {
    const movie = m.body.movie as { id: number; version: number };
    versions.set(movie.id, [...(versions.get(movie.id) ?? []), movie.version]);
  }
  for (const [id, seen] of versions) {
    assert.deepEqual(
      seen,
      [...seen].sort((a, b) => a - b),
      `movie ${id} out of order: ${seen}`,
    );
  }
  assert.deepEqual(versions.get(low), [1, 2, 3]);

  // Once caught up: 20 more updates, each timed from its commit (the PATCH's answer) to arrival.
  await updateSome(low + 40, true);
  await waitFor(
    'the timed updates',
    () => new Set(events.messages.map((m) => m.messageId)).size >= expected.size + 20,
  );
  const timed = deduplicated(events.messages).slice(unique.length);

  const latencies = timed
    .filter((m) => m.routingKey === 'movie.updated' && committedAt.has((m.body.movie as { id: number }).id))
    .map((m) => m.arrivedAt - (committedAt.get((m.body.movie as { id: number }).id) as number))
    .sort((a, b) => a - b);
  const fromCreatedAt = unique
    .map((m) => m.arrivedAt - Date.parse(String(m.body.occurred_at)))
    .sort((a, b) => a - b);
  t.diagnostic(
    `events ${expected.size}, deliveries ${events.messages.length} (duplicates ${events.messages.length - unique.length}); ` +
      `steady updates' commit to arrival (ms): p50 ${percentile(latencies, 50)}, p99 ${percentile(latencies, 99)}; ` +
      `created_at (to the second) to arrival over the whole burst, outages included (ms): p50 ${percentile(fromCreatedAt, 50)}, p99 ${percentile(fromCreatedAt, 99)}`,
  );
});

// The trace and span ids of a W3C traceparent header (sampled).
function traceparentOf(message: Received | undefined): { traceId: string; spanId: string } {
  const header = String(message?.headers.traceparent);
  const [, traceId, spanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(header) ?? [];
  assert.ok(traceId && spanId, `not a sampled traceparent: ${header}`);
  return { traceId, spanId };
}

test('when tracing is on, then a command continues its traceparent, and each event published carries the trace of the change that wrote it', async (t) => {
  const { receiver, endpoint } = await startOtlpReceiver(t);
  const standIn = await startPaymentsStandIn({ host: '127.0.0.1', port: 0 });
  t.after(() => standIn.close());
  const events = await collect(client, 'test-traced');
  const dsn = await createTestDatabase();
  const server = await startServer(t, [
    ...['-db-dsn', dsn, '-amqp-url', rabbit.url, '-amqp-relay-poll', '100ms'],
    ...['-otel-endpoint', endpoint, '-otel-sample-ratio', '1', '-payments-url', standIn.url],
  ]);
  await waitFor('the relay to lead', () => isLeader(server.port), 30_000);
  const db = createPool({ dsn, maxOpenConns: 2, maxIdleTimeMs: 60_000, queryTimeoutMs: 10_000 });
  t.after(() => db.end());
  const buyer = await createUser(db);

  // A change over HTTP: its event carries the request's trace.
  const created = await fetch(`http://127.0.0.1:${server.port}/api/v1/products`, {
    method: 'POST',
    headers: { authorization: `Bearer ${buyer.token}` },
    body: JSON.stringify({ name: 'Traced lamp', price: 12.5, stock: 5 }),
  });
  assert.equal(created.status, 201);
  const product = (await created.json()) as { id: number };

  // A command sent in the caller's trace: the order it places, and each step of its workflow,
  // stay in that trace.
  const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const callerSpan = '00f067aa0ba902b7';
  await sendCommands(client, [
    {
      messageId: 'traced-order',
      type: 'orders.place',
      headers: { authorization: `Bearer ${buyer.token}`, traceparent: `00-${callerTrace}-${callerSpan}-01` },
      body: JSON.stringify({ items: [{ product_id: product.id, quantity: 1 }], payment_token: 'tok_visa' }),
    },
  ]);
  const orderEvents = () => events.messages.filter((m) => m.routingKey.startsWith('order.'));
  await waitFor(
    'the confirmed order on the exchange',
    () => orderEvents().some((m) => (m.body.order as { status: string }).status === 'confirmed'),
    30_000,
  );
  const productEvent = events.messages.find((m) => m.routingKey === 'product.created');
  server.child.kill('SIGTERM');
  assert.deepEqual(await server.waitForExit(15_000), { code: 0, signal: null });
  const { spans } = receiver;
  const exported = (ids: { traceId: string; spanId: string }): ReceivedSpan | undefined =>
    spans.find((s) => s.traceId === ids.traceId && s.spanId === ids.spanId);

  const request = spans.find((s) => s.kind === SPAN_KIND.server && s.name === 'POST /api/v1/products');
  assert.ok(request, 'the product request has a server span');
  const written = exported(traceparentOf(productEvent));
  assert.ok(written, "the product event's traceparent names an exported span");
  assert.ok(descendsFrom(written, request, spans), 'in the request that wrote it');

  const command = spans.find((s) => s.name === 'command orders.place');
  assert.ok(command, `no command span among ${spans.map((s) => s.name).join(', ')}`);
  assert.equal(command.kind, SPAN_KIND.consumer);
  assert.deepEqual([command.traceId, command.parentSpanId], [callerTrace, callerSpan]);
  assert.ok(
    spans.some((s) => s.scope === '@opentelemetry/instrumentation-pg' && descendsFrom(s, command, spans)),
    "the order's SQL is in the command's span",
  );
  assert.deepEqual(
    orderEvents().map((m) => [(m.body.order as { status: string }).status, traceparentOf(m).traceId]),
    [
      ['pending', callerTrace],
      ['reserved', callerTrace],
      ['paid', callerTrace],
      ['confirmed', callerTrace],
    ],
  );
  const placed = exported(traceparentOf(orderEvents()[0]));
  assert.ok(placed && descendsFrom(placed, command, spans), 'order.created was written in the command');
});
