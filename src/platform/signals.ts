// SIGINT and SIGTERM as requests to stop, for `serve` (one process, or a cluster's primary).
// A Ctrl-C in a terminal reaches every process of the foreground group, and `npm start`
// forwards the one it got to its child as well: one key press arrives twice within
// milliseconds. A repeat of the same signal within ECHO_MS is taken for that echo; any other
// signal after the first is a second request, which means "now".
export const ECHO_MS = 1000;

type Handlers = Readonly<{
  first: (signal: NodeJS.Signals) => void;
  second: (signal: NodeJS.Signals) => void;
}>;

let handlers: Handlers | undefined;
let firstSignal: { signal: NodeJS.Signals; at: number } | undefined;

function onSignal(signal: NodeJS.Signals): void {
  if (!handlers) return;
  if (firstSignal === undefined) {
    firstSignal = { signal, at: performance.now() };
    handlers.first(signal);
  } else if (signal !== firstSignal.signal || performance.now() - firstSignal.at >= ECHO_MS) {
    handlers.second(signal);
  }
}

// Replaces the previous handlers: start-up installs ones that exit at once (the embedded
// PostgreSQL, which no longer shares the terminal's process group, is stopped on the way
// out), serving installs the graceful shutdown.
export function onStopSignals(next: Handlers): void {
  if (handlers === undefined) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  handlers = next;
}
