// A stand-in for the external payment provider, for development, tests and the benchmark
// (`greenlight payments stand-in`, or startPaymentsStandIn in-process): it serves the
// provider's contract (docs/payments.md) from memory, and fails as real providers do when
// told to: declines (`declineRate`; `tok_visa` always succeeds, `tok_declined` always
// declines), 500s that apply nothing (`errorRate`), answers lost after the call was applied
// (`lostRate`: the connection is dropped, so the caller cannot know), and slow answers
// (`latencyMs`). Its ledger (GET /v1/charges, GET /v1/refunds) is what tests check money by.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../platform/logger.ts';
import { type Answer, Ledger, type LedgerCharge, type LedgerRefund } from './ledger.ts';

export type StandInBehaviour = {
  // Shares of calls, 0–1.
  declineRate: number;
  errorRate: number;
  lostRate: number;
  latencyMs: number;
};

// What the stand-in does to one call instead of answering it: `error` answers 500 and
// applies nothing, `lost` applies the call and drops the connection.
export type Fault = 'error' | 'lost';

export type StandInOptions = Partial<StandInBehaviour> & { host?: string; port?: number; logger?: Logger };

export type PaymentsStandIn = {
  url: string;
  // May be changed while it runs.
  behaviour: StandInBehaviour;
  // Every POST received, answered or not, in order.
  readonly calls: ReadonlyArray<Readonly<{ path: string; idempotencyKey: string | undefined }>>;
  charges(): readonly LedgerCharge[];
  refunds(): readonly LedgerRefund[];
  // The next calls meet these faults, one each, before the rates apply again.
  failNext(...faults: Fault[]): void;
  close(): Promise<void>;
};

const MAX_BODY_BYTES = 64 * 1024;
const MAX_KEY_LENGTH = 255;

export async function startPaymentsStandIn(options: StandInOptions = {}): Promise<PaymentsStandIn> {
  const state: State = {
    behaviour: {
      declineRate: options.declineRate ?? 0,
      errorRate: options.errorRate ?? 0,
      lostRate: options.lostRate ?? 0,
      latencyMs: options.latencyMs ?? 0,
    },
    ledger: new Ledger(),
    calls: [],
    faults: [],
    timers: new Set(),
    logger: options.logger,
  };
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    readBody(req).then(
      (raw) => handle(state, req, res, raw),
      () => send(res, 413, { error: { code: 'body_too_large' } }, { connection: 'close' }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    behaviour: state.behaviour,
    calls: state.calls,
    charges: () => state.ledger.charges,
    refunds: () => state.ledger.refunds,
    failNext: (...next) => {
      state.faults.push(...next);
    },
    close: async () => {
      for (const timer of state.timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type State = {
  behaviour: StandInBehaviour;
  ledger: Ledger;
  calls: Array<{ path: string; idempotencyKey: string | undefined }>;
  faults: Fault[];
  // The answers waiting out the latency.
  timers: Set<NodeJS.Timeout>;
  logger: Logger | undefined;
};

function handle(state: State, req: IncomingMessage, res: ServerResponse, raw: string): void {
  const url = new URL(req.url ?? '/', 'http://stand-in');
  const path = url.pathname;
  if (path !== '/v1/charges' && path !== '/v1/refunds') {
    send(res, 404, { error: { code: 'not_found' } });
  } else if (req.method === 'POST') {
    post(state, req, res, path, raw);
  } else if (req.method === 'GET') {
    // The ledger, filtered by ?reference= (charges) or ?charge= (refunds).
    const [name, filter, rows] =
      path === '/v1/charges'
        ? (['charges', 'reference', state.ledger.charges] as const)
        : (['refunds', 'charge', state.ledger.refunds] as const);
    const wanted = url.searchParams.get(filter);
    send(res, 200, {
      [name]: (rows as ReadonlyArray<Record<string, unknown>>).filter(
        (row) => wanted === null || row[filter] === wanted,
      ),
    });
  } else {
    send(res, 405, { error: { code: 'method_not_allowed' } }, { allow: 'GET, POST' });
  }
}

function post(state: State, req: IncomingMessage, res: ServerResponse, path: string, raw: string): void {
  const { behaviour } = state;
  const header = req.headers['idempotency-key'];
  const key = typeof header === 'string' ? header : undefined;
  state.calls.push({ path, idempotencyKey: key });
  const fault =
    state.faults.shift() ??
    (Math.random() < behaviour.errorRate ? 'error' : Math.random() < behaviour.lostRate ? 'lost' : undefined);
  const answer = answerPost(state.ledger, behaviour, path, key, raw, fault);
  state.logger?.info(
    { path, idempotency_key: key, status: answer.status, fault, replayed: answer.replayed },
    'payment call',
  );
  const timer = setTimeout(() => {
    state.timers.delete(timer);
    if (fault === 'lost') req.socket.destroy();
    else send(res, answer.status, answer.body, answer.replayed ? { 'idempotent-replayed': 'true' } : {});
  }, behaviour.latencyMs);
  state.timers.add(timer);
}

// The answer to a POST, applied to the ledger unless the fault is `error`.
function answerPost(
  ledger: Ledger,
  behaviour: StandInBehaviour,
  path: string,
  key: string | undefined,
  raw: string,
  fault: Fault | undefined,
): Answer & { replayed: boolean } {
  if (fault === 'error') return { status: 500, body: { error: { code: 'internal_error' } }, replayed: false };
  if (key === undefined || key === '' || key.length > MAX_KEY_LENGTH) {
    return {
      status: 400,
      body: {
        error: {
          code: 'idempotency_key_required',
          message: `an Idempotency-Key header of 1 to ${MAX_KEY_LENGTH} characters is required`,
        },
      },
      replayed: false,
    };
  }
  let payload: unknown;
  try {
    payload = JSON.parse(raw);
  } catch {
    return { status: 400, body: { error: { code: 'invalid_json' } }, replayed: false };
  }
  return ledger.answer(key, path, payload, () =>
    path === '/v1/charges'
      ? ledger.charge(key, payload, (source) => declineOf(source, behaviour.declineRate))
      : ledger.refund(key, payload),
  );
}

function declineOf(source: string, declineRate: number): string | undefined {
  if (source === 'tok_visa') return undefined;
  if (source === 'tok_declined') return 'card_declined';
  return Math.random() < declineRate ? 'card_declined' : undefined;
}

// The body as text, or a rejection once it passes MAX_BODY_BYTES.
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(new Error('body too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}
