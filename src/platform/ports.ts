// A listening port taken by another process, as a start-up error that names the port and the
// flag that chose it.
import { createServer } from 'node:net';

export class PortInUseError extends Error {}

// `flag` is the setting that chose the address, for the operator to change.
export function portInUse(host: string, port: number, flag: string): PortInUseError {
  return new PortInUseError(
    `cannot listen on ${host}:${port}: the port is in use by another process; stop it or choose another with ${flag}`,
  );
}

// Workers bind with SO_REUSEPORT, which Linux lets any later socket with the same option and
// owner join: a second instance started on the same port would silently take half the
// connections. So before any worker binds, the instance binds the port itself without the
// option, which fails while anyone holds it, and lets it go at once. A fixed port only.
export async function ensurePortFree(host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? portInUse(host, port, flag) : err),
    );
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

// A listen() that failed because the port is taken, as the same start-up error.
export function explainListenError(err: unknown, host: string, port: number, flag: string): unknown {
  return (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? portInUse(host, port, flag) : err;
}
