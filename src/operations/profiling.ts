// CPU profiles and heap snapshots of the process that serves the request. Both pause or slow
// the process, so one at a time per process.
import { Session } from 'node:inspector/promises';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapSnapshot } from 'node:v8';
import { BusyError } from '../platform/errors.ts';

export const MAX_PROFILE_SECONDS = 60;

let busy = false;

export function isProfiling(): boolean {
  return busy;
}

function claim(): void {
  if (busy) throw new BusyError('a profile or heap snapshot is already being taken by this process');
  busy = true;
}

// The V8 CPU profile (.cpuprofile JSON: Chrome DevTools and speedscope read it) of `seconds`.
export async function cpuProfile(seconds: number): Promise<string> {
  claim();
  const session = new Session();
  try {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await sleep(seconds * 1000);
    const { profile } = await session.post('Profiler.stop');
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
    busy = false;
  }
}

// A heap snapshot (.heapsnapshot JSON), streamed as V8 writes it; the process is free again
// once the stream has ended or failed.
export function heapSnapshot(): Readable {
  claim();
  try {
    const stream = getHeapSnapshot();
    stream.once('close', () => {
      busy = false;
    });
    return stream;
  } catch (err) {
    busy = false;
    throw err;
  }
}
