// How many connections a listener takes: the configured caps, a cap derived from the
// open-files limit, each worker's share of a cap, and the proxies exempt from the cap per
// address. The arithmetic of http-server.ts's connection policy.
import { readFileSync } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';

// One process's share of a cap the instance's `workers` enforce together, each on the
// connections the kernel gives it (SO_REUSEPORT spreads one address's connections about
// evenly). Rounded down, so that together they never exceed it; at least 1. 0 (no cap) stays 0.
export function capShare(cap: number, workers: number): number {
  return cap === 0 || workers <= 1 ? cap : Math.max(1, Math.floor(cap / workers));
}

export type EffectiveCaps = Readonly<{ maxConnections: number; maxConnectionsPerAddress: number }>;

// The soft limit on open files of this process (Linux), or undefined where unknown.
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

// File descriptors kept back from client connections: database pools, the job queue, log
// and listener sockets, files.
export const FD_RESERVE = 1024;

// -max-connections 0: as many as the open-files limit allows after the reserve.
export function effectiveMaxConnections(configured: number, limit = openFilesLimit()): number {
  if (configured > 0) return configured;
  return limit === undefined ? 10_000 : Math.max(64, limit - FD_RESERVE);
}

// Trusted proxies as a BlockList, for the per-address connection cap.
export function proxyMatcher(proxies: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const proxy of proxies) {
    const [address = '', prefix] = proxy.split('/');
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (address) => {
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
    return list.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
  };
}
