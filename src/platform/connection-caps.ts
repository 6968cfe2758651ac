// How many connections a listener takes: the configured caps, a cap derived from the
// open-files limit, each worker's share of a cap, and the proxies exempt from the cap per
// address. The arithmetic of http-server.ts's connection policy.
import { readFileSync } from 'node:fs';
import { BlockList, isIPv6, type Socket } from 'node:net';

// One process's share of a cap the instance's `workers` enforce together, each on the
// connections the kernel gives it (SO_REUSEPORT spreads one address's connections about
// evenly). Rounded down, so that together they never exceed it; at least 1. 0 (no cap) stays 0.
function capShare(cap: number, workers: number): number {
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

// A worker's caps on a port it shares with the instance's other workers: its share of the
// cap per address, and of the total unless that is per process already (derived from the
// process's own open-files limit).
export function shareOfCaps(whole: EffectiveCaps, workers: number, perProcess: boolean): EffectiveCaps {
  return {
    maxConnections: perProcess ? whole.maxConnections : capShare(whole.maxConnections, workers),
    maxConnectionsPerAddress: capShare(whole.maxConnectionsPerAddress, workers),
  };
}

// The cap on one address's open connections, for a listener's 'connection' event: true when
// `socket` is taken (its close is then counted off), false when its address already has `cap()`
// (0: no cap) and is not exempt. The cap is read on each connection: a worker's share is known
// only once it listens.
export function perAddressCap(
  cap: () => number,
  isExempt: (address: string) => boolean,
): (socket: Socket) => boolean {
  const open = new Map<string, number>();
  return (socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (open.get(address) ?? 0) + 1;
    const limit = cap();
    if (limit > 0 && count > limit && !isExempt(address)) return false;
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
    return true;
  };
}
