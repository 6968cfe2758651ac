// Commands from other systems, taken from the broker's command queue: each type is one entry
// of COMMANDS, which calls the same use case as the HTTP route, with the same validation,
// permission check and error messages. A command carries its sender's credential in a header
// (`authorization: Bearer <token>` or `x-api-key`), checked by the same authenticators as HTTP.
// Its message id is recorded in the transaction of its change, so a second delivery is
// acknowledged without being applied again; the command is acknowledged only after that
// commit. What can never succeed is dead-lettered with its reason; a transient failure (the
// database down) is put back, after a backoff, up to MAX_ATTEMPTS times in this process.
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
import { commandApplied, insertCommand } from './broker.sql.ts';
import type { CommandHandler, CommandOutcome, IncomingCommand } from './broker.ts';

// A command that can never succeed: dead-lettered with this message.
export class PoisonCommandError extends Error {}

// A command that may succeed later although its HTTP route would answer 4xx (its message id's
// first delivery still in progress): put back.
class RetryLaterError extends Error {}

// The command's message id was applied before: acknowledged, not applied again.
class AlreadyAppliedError extends Error {}

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
  const type = (ctx.command.contentType ?? 'application/x-ndjson').split(';')[0]?.trim() ?? '';
  const format = IMPORT_FORMATS[type];
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

// POST /api/v1/orders as a command: the body is the route's JSON, read by the route's reader
// (whatever the content-type, as the route reads it) and checked by placeOrder; the message id
// is the order's Idempotency-Key. A redelivery while the first is still in its transaction
// (the key busy: the route's 409) is put back; one after it finds the message id recorded, or
// the key's answer.
async function placeOrderCommand(ctx: CommandContext): Promise<void> {
  if (!Value.Check(IdempotencyKey, ctx.messageId))
    throw new PoisonCommandError(
      'message-id must be 1-255 visible ASCII characters: it is the idempotency key',
    );
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
    refusal: (identity) => permissionRefusal(identity, 'movies:write'),
    answer: bookAnswer,
    run: importCommand,
  },
  'orders.place': {
    refusal: (identity) => scopeRefusal(identity, 'orders:write'),
    answer: productsApiAnswer,
    run: placeOrderCommand,
  },
};

const MAX_ATTEMPTS = 10;
const MAX_RETRY_DELAY_MS = 10_000;

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

// What became of a failed command: `permanent` when no retry can help (a client error of its
// HTTP API, except 429), with the reason to dead-letter it with.
function classify(err: unknown, spec: CommandSpec | undefined): { permanent: boolean; reason: string } {
  if (err instanceof PoisonCommandError) return { permanent: true, reason: err.message };
  if (err instanceof RetryLaterError) return { permanent: false, reason: err.message };
  const { status, message } = (spec?.answer ?? bookAnswer)(err);
  return { permanent: status < 500 && status !== 429, reason: message };
}

export function commandHandler(deps: CommandDeps): CommandHandler {
  const attempts = new Map<string, number>();
  const settle = (type: string, result: CommandResult, outcome: CommandOutcome): CommandOutcome => {
    deps.metrics.commands.inc({ type: COMMANDS[type] ? type : 'unknown', outcome: result });
    return outcome;
  };
  return async (command) => {
    const type = command.type ?? '';
    const key = command.messageId ?? '';
    try {
      const from = traceCarrierOf((name) => command.headers[name]);
      const result = await inSpan(`command ${type}`, { kind: 'CONSUMER', from }, () =>
        applyCommand(deps, command),
      );
      attempts.delete(key);
      return settle(type, result, { kind: 'ack' });
    } catch (err) {
      const tried = (attempts.get(key) ?? 0) + 1;
      const { permanent, reason } = classify(err, COMMANDS[type]);
      if (permanent || tried >= MAX_ATTEMPTS) {
        attempts.delete(key);
        const why = permanent ? reason : `gave up after ${tried} attempts: ${(err as Error).message}`;
        deps.logger.warn({ message_id: command.messageId, type, reason: why }, 'command dead-lettered');
        return settle(type, 'dead', { kind: 'dead', reason: why });
      }
      attempts.set(key, tried);
      deps.logger.warn(
        { err, message_id: command.messageId, type, attempt: tried },
        'command failed; retrying',
      );
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** tried, MAX_RETRY_DELAY_MS)));
      return settle(type, 'retry', { kind: 'retry' });
    }
  };
}

async function applyCommand(deps: CommandDeps, command: IncomingCommand): Promise<CommandResult> {
  const { messageId, type = '' } = command;
  if (!messageId) throw new PoisonCommandError('message-id is required (it makes a command apply once)');
  const spec = COMMANDS[type];
  if (!spec)
    throw new PoisonCommandError(
      `unknown command type "${type}"; known: ${Object.keys(COMMANDS).join(', ')}`,
    );
  const identity = await deps.reauthenticate(credentialOf(command.headers));
  const refused = spec.refusal(identity);
  if (refused) throw refused;
  if (await commandApplied(deps.db, messageId)) return 'duplicate';
  try {
    await spec.run({
      db: deps.db,
      orders: { ...deps.orders, db: deps.db },
      identity,
      messageId,
      command,
      operations: deps.operations,
      claim: async (tx) => {
        if (!(await insertCommand(tx, messageId, type, identity.id))) throw new AlreadyAppliedError();
      },
    });
    return 'applied';
  } catch (err) {
    if (err instanceof AlreadyAppliedError) return 'duplicate';
    throw err;
  }
}
