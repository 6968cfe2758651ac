// What the service's own processes cost, read from /proc: CPU time and resident memory of
// the primary and each worker. PostgreSQL's processes (children of the primary too) are not
// the service's and are left out.
import { readFileSync } from 'node:fs';

// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 a second.
const CLOCK_TICKS_PER_SECOND = 100;

function isPostgres(pid: number): boolean {
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  return (cmdline.split('\0')[0] ?? '').endsWith('/postgres');
}

// CPU time (user + system) the service's own processes have used, in microseconds. Per
// request, it is what a scenario costs the service whatever else shares the machine, where
// req/s also measures the neighbours.
export function serviceCpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      if (isPostgres(pid)) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process has exited
    }
  }
  return (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}

export type ProcessMemory = {
  pid: number;
  // "primary", "worker 1", "worker 2" … (node:cluster's worker id), or "service" when one
  // process does everything (-workers 1)
  role: string;
  peak_mib: number; // VmHWM: the most it has held since it started
  now_mib: number; // VmRSS when read
};

function clusterWorkerId(pid: number): string | undefined {
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return environ.find((v) => v.startsWith('NODE_UNIQUE_ID='))?.slice('NODE_UNIQUE_ID='.length);
}

// `pids`: the process the benchmark started first, then its children.
export function serviceMemory(pids: readonly number[]): ProcessMemory[] {
  const found: ProcessMemory[] = [];
  for (const pid of pids) {
    try {
      if (isPostgres(pid)) continue;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
      const worker = pid === pids[0] ? undefined : clusterWorkerId(pid);
      found.push({
        pid,
        role: pid === pids[0] ? 'primary' : worker ? `worker ${worker}` : 'child',
        peak_mib: Math.round(kib('VmHWM') / 1024),
        now_mib: Math.round(kib('VmRSS') / 1024),
      });
    } catch {
      // the process has exited
    }
  }
  if (found.length === 1 && found[0]) found[0].role = 'service';
  return found;
}
