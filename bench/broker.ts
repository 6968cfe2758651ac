// Scenario A1: how soon a committed change reaches RabbitMQ while the service is writing at
// full speed. S4's load (wrk, movies created as fast as the service takes them) runs against
// the service, while a probe creates one more movie every PROBE_INTERVAL_MS; a consumer bound
// to the events exchange receives every `movie.created`. A probe's latency runs from the
// moment it sends its POST to the moment the consumer has the event: an upper bound of
// commit-to-publish (the commit, the relay, the broker's routing and its delivery to us all
// happen in between). Every movie S4 created must arrive too: none lost.
import { Connection } from 'rabbitmq-client';
import { percentile } from './callbacks.ts';
import type { LoadResult } from './load.ts';

export type PublishLatencyResult = {
  s4_rps: number;
  probes: number;
  received: number;
  // movies created (S4's 201s and the probes) whose event never arrived
  missing: number;
  events_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
};

const PROBE_INTERVAL_MS = 20;
// How long events may keep arriving after the load has ended.
const DRAIN_MS = 10_000;

type Spec = Readonly<{
  url: string;
  token: string;
  amqpUrl: string;
  exchange: string;
  durationSeconds: number;
  // S4's load against the service, for that many seconds
  load: (seconds: number) => Promise<LoadResult>;
}>;

async function probe(url: string, token: string, n: number): Promise<number> {
  const res = await fetch(`${url}/v1/movies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ title: `A1 probe ${n}`, year: 2020, runtime: '90 mins', genres: ['bench'] }),
  });
  const body = (await res.json()) as { movie?: { id: number } };
  if (res.status !== 201 || !body.movie) throw new Error(`A1 probe: ${res.status} ${JSON.stringify(body)}`);
  return body.movie.id;
}

export async function runPublishLatency(spec: Spec): Promise<PublishLatencyResult> {
  const connection = new Connection({ url: spec.amqpUrl, retryLow: 100, retryHigh: 1000 });
  const arrived = new Map<number, number>();
  let firstArrival = 0;
  let lastArrival = 0;
  const consumer = connection.createConsumer(
    {
      queue: `bench-a1-${process.pid}`,
      queueOptions: { exclusive: true, autoDelete: true },
      exchanges: [{ exchange: spec.exchange, type: 'topic', durable: true }],
      queueBindings: [{ exchange: spec.exchange, routingKey: 'movie.created' }],
      qos: { prefetchCount: 1000 },
    },
    (msg) => {
      const now = performance.now();
      const id = (msg.body as { movie?: { id?: number } }).movie?.id;
      if (typeof id === 'number' && !arrived.has(id)) arrived.set(id, now);
      firstArrival ||= now;
      lastArrival = now;
    },
  );
  // A broken consumer shows as events missing from the result. Once it is closing, the acks
  // of deliveries still buffered fail on the closed channel: nothing is missing then.
  let closing = false;
  consumer.on('error', (err) => {
    if (!closing) console.error(`A1 consumer: ${err.message}`);
  });
  await new Promise<void>((resolve) => consumer.once('ready', () => resolve()));
  try {
    const sentAt = new Map<number, number>();
    const deadline = performance.now() + spec.durationSeconds * 1000;
    const probing = (async () => {
      for (let n = 0; performance.now() < deadline; n++) {
        const sent = performance.now();
        sentAt.set(await probe(spec.url, spec.token, n), sent);
        await new Promise((r) => setTimeout(r, Math.max(0, PROBE_INTERVAL_MS - (performance.now() - sent))));
      }
    })();
    const load = await spec.load(spec.durationSeconds);
    await probing;
    const created = (load.statuses['201'] ?? 0) + sentAt.size;
    const drainUntil = performance.now() + DRAIN_MS;
    while (arrived.size < created && performance.now() < drainUntil)
      await new Promise((r) => setTimeout(r, 50));
    const latencies = [...sentAt]
      .filter(([id]) => arrived.has(id))
      .map(([id, sent]) => (arrived.get(id) as number) - sent)
      .sort((a, b) => a - b);
    const ms = (v: number) => Number(v.toFixed(2));
    return {
      s4_rps: Math.round(load.rps),
      probes: sentAt.size,
      received: arrived.size,
      missing: Math.max(0, created - arrived.size),
      events_per_s: Math.round(arrived.size / Math.max(0.001, (lastArrival - firstArrival) / 1000)),
      p50_ms: ms(percentile(latencies, 0.5)),
      p99_ms: ms(percentile(latencies, 0.99)),
      max_ms: ms(latencies.at(-1) ?? 0),
    };
  } finally {
    closing = true;
    await consumer.close();
    await connection.close();
  }
}
