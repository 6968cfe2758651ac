// Scenario C1: the callback service under a load far above the task's. `clients` senders
// each post `ids` random ids (from 1..idRange, so many repeat) every `intervalMs`, for the
// duration, against a service whose upstream is the stand-in with the task's real delays
// (300–4,300 ms). Reports callbacks accepted a second, the p50/p99 of the answers, upstream
// lookups a second, the largest backlog (callbacks stored, not yet processed) and its age
// seen during the run, and how long the backlog took to drain afterwards.
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import type { StandInUpstream } from '../src/callbacks/stand-in.ts';

export type CallbackLoadSpec = Readonly<{
  url: string;
  upstream: StandInUpstream;
  clients: number;
  ids: number;
  idRange: number;
  intervalMs: number;
  durationSeconds: number;
}>;

export type CallbackLoadResult = Readonly<{
  accepted_per_s: number;
  non_200: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  lookups_per_s: number;
  max_backlog: number;
  max_backlog_age_s: number;
  drained_after_s: number | null;
}>;

type Health = { backlog: { callbacks: number; oldest_age_seconds: number } };

async function health(agent: Agent, url: string): Promise<Health['backlog']> {
  const { body } = await request(`${url}/`, { dispatcher: agent });
  return ((await body.json()) as Health).backlog;
}

// p's quantile (0–1) of ascending `sorted`
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

export async function runCallbackLoad(spec: CallbackLoadSpec): Promise<CallbackLoadResult> {
  // One keep-alive connection per client, as the task's senders would hold.
  const agent = new Agent({ connections: spec.clients + 2, keepAliveTimeout: 60_000 });
  const latencies: number[] = [];
  let non200 = 0;
  const lookupsBefore = spec.upstream.totalRequests;
  const started = performance.now();
  const end = started + spec.durationSeconds * 1000;
  let maxBacklog = 0;
  let maxAge = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const backlog = await health(agent, spec.url);
      maxBacklog = Math.max(maxBacklog, backlog.callbacks);
      maxAge = Math.max(maxAge, backlog.oldest_age_seconds);
      await sleep(500);
    }
  })();
  const client = async (offset: number) => {
    await sleep(offset);
    for (let next = performance.now(); next < end; next += spec.intervalMs) {
      await sleep(Math.max(0, next - performance.now()));
      const ids = Array.from({ length: spec.ids }, () => 1 + Math.floor(Math.random() * spec.idRange));
      const sent = performance.now();
      const { statusCode, body } = await request(`${spec.url}/callback`, {
        method: 'POST',
        body: JSON.stringify({ object_ids: ids }),
        headers: { 'content-type': 'application/json' },
        dispatcher: agent,
      });
      await body.dump();
      latencies.push(performance.now() - sent);
      if (statusCode !== 200) non200++;
    }
  };
  // Senders spread over the interval, not in lockstep.
  await Promise.all(
    Array.from({ length: spec.clients }, (_, i) => client((i * spec.intervalMs) / spec.clients)),
  );
  const elapsed = (performance.now() - started) / 1000;
  const lookups = spec.upstream.totalRequests - lookupsBefore;
  let drainedAfter: number | null = null;
  const loadEnded = performance.now();
  while (performance.now() - loadEnded < 60_000) {
    if ((await health(agent, spec.url)).callbacks === 0) {
      drainedAfter = (performance.now() - loadEnded) / 1000;
      break;
    }
    await sleep(200);
  }
  sampling = false;
  await sampler;
  await agent.close();
  const sorted = latencies.sort((a, b) => a - b);
  return {
    accepted_per_s: Math.round((latencies.length - non200) / elapsed),
    non_200: non200,
    p50_ms: Number(percentile(sorted, 0.5).toFixed(2)),
    p99_ms: Number(percentile(sorted, 0.99).toFixed(2)),
    max_ms: Number((sorted.at(-1) ?? 0).toFixed(2)),
    lookups_per_s: Math.round(lookups / elapsed),
    max_backlog: maxBacklog,
    max_backlog_age_s: Number(maxAge.toFixed(2)),
    drained_after_s: drainedAfter === null ? null : Number(drainedAfter.toFixed(1)),
  };
}
