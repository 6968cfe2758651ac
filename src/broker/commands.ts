// Commands from other systems, taken from the broker's command queue: each type is one entry
// of COMMANDS, which calls the same use case as the HTTP route, with the same validation,
// permission check and error messages. A command carries its sender's credential in a header
// (`authorization: Bearer <token>` or `x-api-key`), checked by the same authenticators as HTTP.
// Its message id is its idempotency key, its sender's user's as an HTTP Idempotency-Key is:
// recorded with that user in the transaction of its change, so a second delivery is
// acknowledged without being applied again (and another command under the same id is
// dead-lettered); the command is acknowledged only after that commit. What can never succeed
// is dead-lettered with its reason at once; a transient failure (the database down) is sent to
// wait out a backoff outside the command queue, up to MAX_ATTEMPTS times in all.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Value } from 'typebox/value';
import { permissionRefusal } from '../accounts/guards.ts';
import type { Identity } from '../accounts/user.ts';
import { apiErrorResponse } from '../api-v1/api.ts';
import { requesterOf, scopeRefusal } from '../api-v1/products.routes.ts';
import type { Credential } from '../auth/authenticator.ts';
import { headerCredential } from '../auth/registry.ts';
import type { OperationsConfig } from '../config.ts';
import { importMovies } from '../movies/bulk.ts';
import { IdempotencyKey, IdempotencyKeyBusyError, PlaceOrderRequest } from '../orders/order.ts';
import { type OrdersDeps, placeOrder } from '../orders/orders.ts';
import type { Db, Queryable } from '../platform/db.ts';
import { errorResponse, UnsupportedMediaTypeError } from '../platform/errors.ts';
import { MAX_BODY_BYTES } from '../platform/json-body.ts';
import type { Logger } from '../platform/logger.ts';
import { readBody } from '../platform/request.ts';
import { inSpan, traceCarrierOf } from '../platform/tracing.ts';
import type { BrokerMetrics, CommandResult } from './broker.metrics.ts';
import { type AppliedCommand, insertCommand, selectCommand } from './broker.sql.ts';
import { type CommandHandler, type CommandOutcome, type IncomingCommand, RETRY_DELAYS_MS } from './broker.ts';

// A command that can never succeed: dead-lettered with this message.
export class PoisonCommandError extends Error {}

// A command that may succeed later although its HTTP route would answer 4xx (its message id's
// first delivery still in progress): put back.
class RetryLaterError extends Error {}

// The command's message id was applied before: acknowledged, not applied again.
class AlreadyAppliedError extends Error {}

// REST's answer (422) to an Idempotency-Key sent again with another request.
const KEY_REUSED = 'validation: idempotency key reused with a different request';

export type CommandContext = Readonly<{
  db: Db;
  orders: OrdersDeps;
  identity: Identity;
  messageId: string;
  command: IncomingCommand;
  operations: OperationsConfig;
  // The change's first statement, in its transaction: records the message id, or throws when
  // it was recorded before.
  claim: (tx: Queryable) => Promise<void>;
}>;

// A thrown error as the command's HTTP API answers it: the status decides whether a retry
// can help, the message is the dead letter's reason.
type ErrorAnswer = Readonly<{ status: number; message: string }>;

export type CommandSpec = Readonly<{
  // The use case keeps its own per-user key with the request's fingerprint (orders'
  // Idempotency-Key): its answer, not the recorded message id, tells a resend from another
  // request, as it tells REST's.
  ownKey: boolean;
  // why the identity may not send it: the HTTP route's own check, or null
  refusal: (identity: Identity) => Error | null;
  // the HTTP API's error table
  answer: (err: unknown) => ErrorAnswer;
  // Applies the command; throws PoisonCommandError (or a client error) when it never can.
  run: (ctx: CommandContext) => Promise<void>;
}>;

// The book's table (/v1) and seed 002's (/api/v1).
const bookAnswer = (err: unknown): ErrorAnswer => {
  const { status, error } = errorResponse(err);
  return { status, message: typeof error === 'string' ? error : JSON.stringify(error) };
};
const productsApiAnswer = (err: unknown): ErrorAnswer => {
  const { code, message } = apiErrorResponse(err);
  return { status: code, message };
};

const IMPORT_FORMATS: Readonly<Record<string, 'ndjson' | 'csv'>> = {
  'application/x-ndjson': 'ndjson',
  'text/csv': 'csv',
};

// POST /v1/movies/import?atomic=true as a command: the body is the upload (NDJSON, or CSV with
// content-type text/csv), every row checked as POST /v1/movies checks a body; any bad row
// dead-letters the whole command with the rows' errors, nothing imported.
async function importCommand(ctx: CommandContext): Promise<void> {
  const format = IMPORT_FORMATS[mediaTypeOf(ctx.command) ?? 'application/x-ndjson'];
  if (!format) throw new UnsupportedMediaTypeError(`content-type must be application/x-ndjson or text/csv`);
  const report = await importMovies(ctx.db, Readable.from([ctx.command.body]), {
    format,
    atomic: true,
    maxBytes: ctx.operations.importMaxBytes,
    workers: 1,
    claim: ctx.claim,
  });
  if (report.failed > 0) {
    throw new PoisonCommandError(
      JSON.stringify({ error: 'rows failed validation', failed: report.failed, errors: report.errors }),
    );
  }
}

// The content-type without its parameters, lower case as media types compare (RFC 9110
// 8.3.1: `Application/X-NDJSON` is `application/x-ndjson`); undefined when none was sent.
function mediaTypeOf(command: IncomingCommand): string | undefined {
  if (command.contentType === undefined) return undefined;
  return command.contentType.split(';')[0]?.trim().toLowerCase() ?? '';
}

// POST /api/v1/orders as a command: the body is the route's JSON, read by the route's reader
// (whatever the content-type, as the route reads it) and checked by placeOrder; the message id
// is the order's Idempotency-Key. A redelivery while the first is still in its transaction
// (the key busy: the route's 409) is put back; one after it finds the message id recorded, or
// the key's answer.
async function placeOrderCommand(ctx: CommandContext): Promise<void> {
  if (ctx.command.body.length > MAX_BODY_BYTES) throw new PoisonCommandError('request body too large');
  const input = readBody(PlaceOrderRequest, ctx.command.body);
  try {
    const placed = await placeOrder(ctx.orders, requesterOf(ctx.identity), input, ctx.messageId, ctx.claim);
    if (placed.replayed) throw new AlreadyAppliedError();
  } catch (err) {
    if (err instanceof IdempotencyKeyBusyError) throw new RetryLaterError(err.message);
    throw err;
  }
}

// Every command type: its HTTP route's check, error table and use case.
export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  'movies.import': {
    ownKey: false,
    refusal: (identity) => permissionRefusal(identity, 'movies:write'),
    answer: bookAnswer,
    run: importCommand,
  },
  'orders.place': {
    ownKey: true,
    refusal: (identity) => scopeRefusal(identity, 'orders:write'),
    answer: productsApiAnswer,
    run: placeOrderCommand,
  },
};

const MAX_ATTEMPTS = 10;

export type CommandDeps = Readonly<{
  db: Db;
  // what placing an order needs besides the pool: the job queue of its workflow, its metrics
  orders: Omit<OrdersDeps, 'db'>;
  operations: OperationsConfig;
  reauthenticate: (credential: Credential) => Promise<Identity>;
  logger: Logger;
  metrics: BrokerMetrics;
}>;

function credentialOf(headers: IncomingCommand['headers']): Credential {
  const credential = headerCredential(headers);
  if (!credential) throw new PoisonCommandError('an authorization or x-api-key header is required');
  return credential;
}

// A database error about the data itself: SQLSTATE class 22 (data exception: invalid input
// syntax, numeric overflow, a NUL in text) or 23 (integrity constraint violation). The same
// command gets the same error every time, so retrying it only holds up the others.
function dataError(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^2[23][0-9A-Z]{3}$/.test(code)) return undefined;
  return `the database refused the command (SQLSTATE ${code}): ${(err as Error).message}`;
}

// What became of a failed command: `permanent` when no retry can help (a client error of its
// HTTP API, except 429, or a database error about its data), with the reason to dead-letter
// it with.
function classify(err: unknown, spec: CommandSpec | undefined): { permanent: boolean; reason: string } {
  if (err instanceof PoisonCommandError) return { permanent: true, reason: err.message };
  if (err instanceof RetryLaterError) return { permanent: false, reason: err.message };
  const refused = dataError(err);
  if (refused) return { permanent: true, reason: refused };
  const { status, message } = (spec?.answer ?? bookAnswer)(err);
  return { permanent: status < 500 && status !== 429, reason: message };
}

// The wait before the attempt-th retry.
const retryDelay = (attempt: number): number =>
  RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length) - 1] ?? 0;

export function commandHandler(deps: CommandDeps): CommandHandler {
  const settle = (type: string, result: CommandResult, outcome: CommandOutcome): CommandOutcome => {
    deps.metrics.commands.inc({ type: COMMANDS[type] ? type : 'unknown', outcome: result });
    return outcome;
  };
  return async (command) => {
    const type = command.type ?? '';
    try {
      const from = traceCarrierOf((name) => command.headers[name]);
      const result = await inSpan(`command ${type}`, { kind: 'CONSUMER', from }, () =>
        applyCommand(deps, command),
      );
      return settle(type, result, { kind: 'ack' });
    } catch (err) {
      const tried = command.attempts + 1;
      const { permanent, reason } = classify(err, COMMANDS[type]);
      if (permanent || tried >= MAX_ATTEMPTS) {
        const why = permanent ? reason : `gave up after ${tried} attempts: ${(err as Error).message}`;
        deps.logger.warn({ message_id: command.messageId, type, reason: why }, 'command dead-lettered');
        return settle(type, 'dead', { kind: 'dead', reason: why });
      }
      const delayMs = retryDelay(tried);
      deps.logger.warn(
        { err, message_id: command.messageId, type, attempt: tried, delay_ms: delayMs },
        'command failed; retrying',
      );
      // No wait here: the broker holds the command for the delay, and this slot takes the next.
      return settle(type, 'retry', { kind: 'retry', attempt: tried, delayMs });
    }
  };
}

// What a command carries, to tell a resend of it from another command under its message id.
function fingerprintOf(command: IncomingCommand): Buffer {
  return createHash('sha256')
    .update(JSON.stringify([command.type, mediaTypeOf(command) ?? null]))
    .update(command.body)
    .digest();
}

async function applyCommand(deps: CommandDeps, command: IncomingCommand): Promise<CommandResult> {
  const { messageId, type = '' } = command;
  if (!messageId) throw new PoisonCommandError('message-id is required (it makes a command apply once)');
  // Checked before any SQL that uses it (a NUL would be the database's error, not the sender's).
  if (!Value.Check(IdempotencyKey, messageId))
    throw new PoisonCommandError(
      'message-id must be 1-255 visible ASCII characters: it is the idempotency key',
    );
  const spec = COMMANDS[type];
  if (!spec)
    throw new PoisonCommandError(
      `unknown command type "${type}"; known: ${Object.keys(COMMANDS).join(', ')}`,
    );
  const identity = await deps.reauthenticate(credentialOf(command.headers));
  const refused = spec.refusal(identity);
  if (refused) throw refused;
  const fingerprint = fingerprintOf(command);
  // A resend is acknowledged; another command under the same id is refused as REST refuses a
  // reused key.
  const judge = (prior: AppliedCommand | undefined): never => {
    if (prior?.fingerprint && !prior.fingerprint.equals(fingerprint))
      throw new PoisonCommandError(KEY_REUSED);
    throw new AlreadyAppliedError();
  };
  try {
    // After the credential: the key is its user's.
    if (!spec.ownKey) {
      const prior = await selectCommand(deps.db, identity.id, messageId);
      if (prior) judge(prior);
    }
    await spec.run({
      db: deps.db,
      orders: { ...deps.orders, db: deps.db },
      identity,
      messageId,
      command,
      operations: deps.operations,
      claim: async (tx) => {
        if (!(await insertCommand(tx, identity.id, messageId, type, fingerprint)))
          judge(await selectCommand(tx, identity.id, messageId));
      },
    });
    return 'applied';
  } catch (err) {
    if (err instanceof AlreadyAppliedError) return 'duplicate';
    throw err;
  }
}
