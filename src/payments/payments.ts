// The client of the external payment provider (docs/payments.md): a charge and a refund,
// each sent with the caller's idempotency key. The provider answers a repeated key with its
// first answer, so a call whose outcome is unknown (a 5xx, a reset, a timeout) is retried
// with the same key and can never charge twice. Each attempt has its own timeout; attempts
// back off exponentially with jitter; a circuit breaker stops calling a provider that keeps
// failing and fails fast until a probe gets through. Connections are kept alive in an undici
// Pool, whose requests the undici instrumentation traces when tracing is on. undici is
// imported by the first call: every worker would otherwise hold it from its start, orders
// or not (with Node's own copy, which it brings, 8-9 MiB of a worker; docs/performance.md).
import { BrokenCircuitError } from 'cockatiel';
import prom from 'prom-client';
import type { Pool } from 'undici';
import type { Logger } from '../platform/logger.ts';
import {
  type CallOutcome,
  type PaymentMetrics,
  type PaymentOperation,
  paymentMetrics,
} from './payments.metrics.ts';
import { createPolicies, type PolicyOptions, UnknownOutcomeError } from './policies.ts';

export type ChargeRequest = {
  // Integer cents.
  amount: number;
  currency: 'usd';
  reference: string;
  source: string;
  idempotencyKey: string;
};
export type ChargeOutcome =
  | { status: 'succeeded'; id: string; amount: number }
  | { status: 'declined'; code: string };
export type RefundRequest = { charge: string; amount: number; idempotencyKey: string };
export type RefundOutcome = { status: 'succeeded'; id: string; amount: number };

// The outcome is unknown (5xx, reset, timeout, circuit open) after the client's own
// retries: the caller must retry later WITH THE SAME idempotency key. `sent` is false when no
// attempt can have reached the provider (the circuit open, no connection made): then nothing
// was charged by this call.
export class PaymentUnavailableError extends Error {
  sent = true;
}

// Connection errors before any byte of the request went out.
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

// The provider answered something the contract does not allow (another 4xx, an unreadable
// body): a bug on one side or the other, not retried. `answer` is the start of the body.
export class PaymentProviderError extends Error {
  readonly status: number;
  readonly answer: string;

  constructor(operation: PaymentOperation, status: number, answer: string, why: string) {
    super(`payment provider answered the ${operation} with ${status}${why}: ${answer}`);
    this.status = status;
    this.answer = answer;
  }
}

export type PaymentsClient = {
  charge(request: ChargeRequest, signal?: AbortSignal): Promise<ChargeOutcome>;
  refund(request: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome>;
  close(): Promise<void>;
};

export type PaymentsClientOptions = {
  url: string;
  // Of one attempt (-payments-timeout).
  timeoutMs: number;
  logger: Logger;
  // Where the metrics go (the server's Metrics.registry); without one they are kept apart.
  registry?: prom.Registry;
  // Connections to the provider at once; calls beyond wait for one.
  connections?: number;
} & PolicyOptions;

// Answers are small JSON objects; a body over this is not one, and is not read further.
const MAX_ANSWER_BYTES = 64 * 1024;
const SHOWN_ANSWER_CHARS = 300;

type Answer = Readonly<{ status: number; text: string }>;

export function createPaymentsClient(options: PaymentsClientOptions): PaymentsClient {
  return new HttpPaymentsClient(options);
}

// The credentials of -payments-url (`https://user:password@…`) as HTTP Basic authorization:
// the pool is made from the URL's origin, which drops them, so they are sent this way.
function basicAuthorization(url: URL): { authorization?: string } {
  if (url.username === '' && url.password === '') return {};
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  return { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

class HttpPaymentsClient implements PaymentsClient {
  #pool: Promise<Pool> | undefined;
  readonly #origin: string;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #poolOptions: Pool.Options;
  readonly #basePath: string;
  readonly #closing = new AbortController();
  readonly #metrics: PaymentMetrics;
  readonly #policies: ReturnType<typeof createPolicies>;
  readonly #logger: Logger;

  constructor(options: PaymentsClientOptions) {
    const base = new URL(options.url);
    this.#basePath = base.pathname.replace(/\/+$/, '');
    this.#origin = base.origin;
    this.#headers = { 'content-type': 'application/json', ...basicAuthorization(base) };
    this.#poolOptions = {
      connections: options.connections ?? 64,
      // Under the 5 s most servers keep an idle connection, so that a request is not sent
      // on one the provider is closing.
      keepAliveTimeout: 4_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      maxResponseSize: MAX_ANSWER_BYTES,
    };
    this.#metrics = paymentMetrics(options.registry ?? new prom.Registry());
    this.#policies = createPolicies(options, this.#metrics);
    this.#logger = options.logger;
  }

  charge({ idempotencyKey, ...payload }: ChargeRequest, signal?: AbortSignal): Promise<ChargeOutcome> {
    return this.#call('charge', '/v1/charges', idempotencyKey, payload, readCharge, signal);
  }

  refund({ idempotencyKey, ...payload }: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome> {
    return this.#call('refund', '/v1/refunds', idempotencyKey, payload, readRefund, signal);
  }

  // Calls in progress end with PaymentUnavailableError: their outcome is unknown.
  async close(): Promise<void> {
    this.#closing.abort();
    await (await this.#pool)?.destroy();
  }

  #connections(): Promise<Pool> {
    this.#pool ??= import('undici').then(({ Pool }) => new Pool(this.#origin, this.#poolOptions));
    return this.#pool;
  }

  async #call<T extends ChargeOutcome | RefundOutcome>(
    operation: PaymentOperation,
    path: string,
    key: string,
    payload: object,
    read: (answer: Answer) => T,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const started = performance.now();
    let outcome: CallOutcome = 'error';
    let sent = false;
    const closing = this.#closing.signal;
    try {
      if (closing.aborted) throw new PaymentUnavailableError('the payments client is closed');
      // Before the attempts: loading undici is not the provider's time, and on a busy
      // machine it could outlast an attempt's timeout and open the breaker.
      const pool = await this.#connections();
      const answer = await this.#policies.run(
        operation,
        (attemptSignal) =>
          this.#attempt(pool, path, key, payload, attemptSignal).catch((err: unknown) => {
            sent ||= !NOT_SENT_CODES.has(String(failureCode(err)));
            throw err;
          }),
        signal ? AbortSignal.any([closing, signal]) : closing,
      );
      const result = read(answer);
      outcome = result.status;
      return result;
    } catch (err) {
      signal?.throwIfAborted();
      const unavailable = unavailableError(err, operation, closing.aborted);
      if (!unavailable) {
        this.#logger.error({ operation, idempotency_key: key, err }, 'payment provider call failed');
        throw err;
      }
      outcome = 'unavailable';
      unavailable.sent = sent;
      this.#logger.warn({ operation, idempotency_key: key, err }, 'payment provider unavailable');
      throw unavailable;
    } finally {
      this.#metrics.called(operation, outcome, (performance.now() - started) / 1000);
    }
  }

  // One attempt: the request, and its answer read whole; a status that leaves the outcome
  // unknown, or a failure to get an answer, is an UnknownOutcomeError (retried).
  async #attempt(
    pool: Pool,
    path: string,
    key: string,
    payload: object,
    signal: AbortSignal,
  ): Promise<Answer> {
    try {
      const { statusCode, body } = await pool.request({
        method: 'POST',
        path: `${this.#basePath}${path}`,
        headers: { ...this.#headers, 'idempotency-key': key },
        body: JSON.stringify(payload),
        signal,
      });
      const text = await body.text().catch((err: { code?: unknown }) => {
        if (err.code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return `(an answer over ${MAX_ANSWER_BYTES} bytes)`;
        throw err;
      });
      if (statusCode >= 500 || statusCode === 409 || statusCode === 429) {
        throw new UnknownOutcomeError(
          `the provider answered ${statusCode}: ${text.slice(0, SHOWN_ANSWER_CHARS)}`,
        );
      }
      return { status: statusCode, text };
    } catch (err) {
      throw unknownOutcome(err);
    }
  }
}

// The PaymentUnavailableError a failed call ends with, or undefined when the failure is not
// one of availability (a refusal, an answer outside the contract).
function unavailableError(
  err: unknown,
  operation: PaymentOperation,
  closed: boolean,
): PaymentUnavailableError | undefined {
  if (err instanceof PaymentUnavailableError) return err;
  const retry = 'retry with the same key';
  if (err instanceof BrokenCircuitError) {
    return new PaymentUnavailableError(`payment ${operation}: the circuit is open; ${retry}`, { cause: err });
  }
  if (err instanceof UnknownOutcomeError) {
    return new PaymentUnavailableError(`payment ${operation}: outcome unknown (${err.message}); ${retry}`, {
      cause: err,
    });
  }
  if (closed) {
    return new PaymentUnavailableError(`payment ${operation}: the client closed during the call; ${retry}`, {
      cause: err,
    });
  }
  return undefined;
}

function readCharge(answer: Answer): ChargeOutcome {
  if (answer.status === 201) return succeeded('charge', answer, 'ch_');
  if (answer.status === 402) {
    // Final whatever the body says: the provider took nothing.
    const code = (parseJson(answer.text) as { error?: { code?: unknown } } | undefined)?.error?.code;
    return { status: 'declined', code: typeof code === 'string' && code !== '' ? code : 'unknown' };
  }
  throw unexpected('charge', answer);
}

function readRefund(answer: Answer): RefundOutcome {
  if (answer.status === 201) return succeeded('refund', answer, 're_');
  throw unexpected('refund', answer);
}

function succeeded(operation: PaymentOperation, answer: Answer, prefix: string) {
  const body = parseJson(answer.text) as { id?: unknown; status?: unknown; amount?: unknown } | undefined;
  if (
    typeof body?.id !== 'string' ||
    !body.id.startsWith(prefix) ||
    body.status !== 'succeeded' ||
    !Number.isSafeInteger(body.amount)
  ) {
    throw unexpected(operation, answer, ', which is not a succeeded answer');
  }
  return { status: 'succeeded' as const, id: body.id, amount: body.amount as number };
}

function unexpected(
  operation: PaymentOperation,
  answer: Answer,
  why = ', which the contract does not allow',
) {
  return new PaymentProviderError(operation, answer.status, answer.text.slice(0, SHOWN_ANSWER_CHARS), why);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// What leaves a call's outcome unknown: a timeout of the attempt, and any failure of the
// connection (reset, refused, closed before the answer: undici's UND_ERR_* and the
// system's E* codes). Anything else (an abort by the caller, a bug) goes on as it is.
// The code of an attempt's failure, through the UnknownOutcomeError it was wrapped in.
function failureCode(err: unknown): unknown {
  const { code, cause } = err as { code?: unknown; cause?: { code?: unknown } };
  return cause?.code ?? code;
}

function unknownOutcome(err: unknown): unknown {
  if (err instanceof UnknownOutcomeError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^(UND_ERR_|E[A-Z]+$)/.test(code)) {
    return new UnknownOutcomeError(`no answer: ${(err as Error).message}`, { cause: err });
  }
  return err;
}
