// Scenario E1: `clients` SSE clients on GET /v1/movies/events while one writer updates a movie
// `rate` times a second; every client must receive every update. The latency of a delivery is
// from the moment the writer sends its PATCH to the moment a client has the event: an upper
// bound of commit-to-client (the commit happens in between).
import { type ClientRequest, request } from 'node:http';
import { percentile } from './callbacks.ts';

export type EventFanoutResult = {
  clients: number;
  connected: number;
  updates: number;
  expected: number;
  delivered: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
};

const TITLE = /"title":"E1 (\d+)"/;

async function call(url: string, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export async function runEventFanout(
  url: string,
  token: string,
  options: { clients: number; rate: number; durationSeconds: number },
): Promise<EventFanoutResult> {
  const { movie } = (await call(url, 'POST', '/v1/movies', token, {
    title: 'E1 0',
    year: 2020,
    runtime: '100 mins',
    genres: ['bench'],
  })) as { movie: { id: number } };
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  const requests: ClientRequest[] = [];
  let connected = 0;

  const open = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(`${url}/v1/movies/events`, {
        headers: { authorization: `Bearer ${token}` },
        agent: false,
      });
      req.on('response', (res) => {
        if (res.statusCode !== 200) return reject(new Error(`SSE connect: ${res.statusCode}`));
        connected++;
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          const now = performance.now();
          buffer += chunk;
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const seq = TITLE.exec(buffer.slice(0, end))?.[1];
            const sent = seq === undefined ? undefined : sentAt.get(Number(seq));
            if (sent !== undefined) latencies.push(now - sent);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf('\n\n');
          }
        });
        res.on('error', () => {});
        resolve();
      });
      req.on('error', (err) => (connected > 0 ? undefined : reject(err)));
      req.end();
      requests.push(req);
    });
  for (let i = 0; i < options.clients; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, options.clients - i) }, open));
  }

  let updates = 0;
  const interval = 1000 / options.rate;
  const stopAt = performance.now() + options.durationSeconds * 1000;
  while (performance.now() < stopAt) {
    const next = performance.now() + interval;
    updates++;
    sentAt.set(updates, performance.now());
    await call(url, 'PATCH', `/v1/movies/${movie.id}`, token, { title: `E1 ${updates}` });
    const pause = next - performance.now();
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
  const expected = updates * connected;
  const deadline = performance.now() + 5_000;
  while (latencies.length < expected && performance.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  for (const req of requests) req.destroy();
  await call(url, 'DELETE', `/v1/movies/${movie.id}`, token);

  const sorted = latencies.sort((a, b) => a - b);
  const ms = (n: number) => Number(n.toFixed(2));
  return {
    clients: options.clients,
    connected,
    updates,
    expected,
    delivered: latencies.length,
    p50_ms: ms(percentile(sorted, 0.5)),
    p99_ms: ms(percentile(sorted, 0.99)),
    max_ms: ms(sorted.at(-1) ?? 0),
  };
}
