// Stand-ins for the task's two peers, for development, tests and the benchmark:
// - the upstream object service: GET /objects/{id} → {"id": N, "online": N % 2 == 0} as
//   text/plain after a random 300–4,300 ms, as the task's own service behaves; tests can
//   change its delays, make it fail a share of requests, hang, or answer garbage;
// - the task's client: posts {"object_ids": [...]} (0–199 ids, many repeated) every 5 s with
//   a 1 s timeout.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../platform/logger.ts';

export type StandInBehaviour = {
  minDelayMs: number;
  maxDelayMs: number;
  // Share of requests answered 500 (after the delay), 0–1.
  failureRate: number;
  // hang: never answer; wrong-id: answer for another id; not-json: answer text that is not JSON.
  mode: 'normal' | 'hang' | 'wrong-id' | 'not-json';
};

export const SEED_BEHAVIOUR: StandInBehaviour = {
  minDelayMs: 300,
  maxDelayMs: 4_300,
  failureRate: 0,
  mode: 'normal',
};

export class StandInUpstream {
  behaviour: StandInBehaviour;
  // Requests received per id, answered or not.
  readonly requests = new Map<number, number>();
  readonly #server: Server;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(behaviour: Partial<StandInBehaviour> = {}) {
    this.behaviour = { ...SEED_BEHAVIOUR, ...behaviour };
    this.#server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.#handle(req, res));
  }

  get totalRequests(): number {
    let total = 0;
    for (const count of this.requests.values()) total += count;
    return total;
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    const { address, port: bound } = this.#server.address() as AddressInfo;
    return `http://${address.includes(':') ? `[${address}]` : address}:${bound}`;
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const match = /^\/objects\/(\d+)$/.exec(req.url ?? '');
    if (req.method !== 'GET' || !match) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const id = Number(match[1]);
    this.requests.set(id, (this.requests.get(id) ?? 0) + 1);
    const { minDelayMs, maxDelayMs, failureRate, mode } = this.behaviour;
    if (mode === 'hang') return;
    const fail = Math.random() < failureRate;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        if (fail) {
          res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
          return;
        }
        const body =
          mode === 'not-json'
            ? 'online'
            : JSON.stringify({ id: mode === 'wrong-id' ? id + 1 : id, online: id % 2 === 0 });
        res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
      },
      minDelayMs + Math.random() * (maxDelayMs - minDelayMs),
    );
    this.#timers.add(timer);
  }
}

// Random ids as the task's client sends them: 0–199 of them, drawn from a small range so
// that many repeat within and across callbacks.
export function randomCallback(maxIds = 199, idRange = 200): { object_ids: number[] } {
  const count = Math.floor(Math.random() * (maxIds + 1));
  return { object_ids: Array.from({ length: count }, () => 1 + Math.floor(Math.random() * idRange)) };
}

// Posts a random callback every interval until the signal aborts; each post has the task's
// 1 s timeout and its outcome is logged.
export async function runStandInClient(
  target: string,
  intervalMs: number,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const url = `${target.replace(/\/+$/, '')}/callback`;
  while (!signal.aborted) {
    const body = randomCallback();
    const started = performance.now();
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)]),
      });
      logger.info(
        {
          status: res.status,
          ids: body.object_ids.length,
          ms: Math.round(performance.now() - started),
          answer: await res.text(),
        },
        'posted callback',
      );
    } catch (err) {
      if (signal.aborted) break;
      logger.error({ err, ids: body.object_ids.length }, 'callback post failed');
    }
    await sleep(intervalMs, undefined, { signal }).catch(() => {});
  }
}
