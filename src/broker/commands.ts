// Commands from other systems, taken from the broker's command queue: each type is one entry
// of COMMANDS, which calls the same use case as the HTTP route, with the same validation and
// permission. A command carries its sender's credential in a header (`authorization: Bearer
// <token>` or `x-api-key`), checked by the same authenticators as HTTP. Its message id is
// recorded in the transaction of its change, so a second delivery is acknowledged without
// being applied again; the command is acknowledged only after that commit. What can never
// succeed is dead-lettered with its reason; a transient failure (the database down) is put
// back, after a backoff, up to MAX_ATTEMPTS times in this process.
import { Readable } from 'node:stream';
import { permissionRefusal } from '../accounts/guards.ts';
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import { headerCredential } from '../auth/registry.ts';
import type { OperationsConfig } from '../config.ts';
import { importMovies } from '../movies/bulk.ts';
import type { Db, Queryable } from '../platform/db.ts';
import { errorResponse, UnsupportedMediaTypeError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { inSpan, traceCarrierOf } from '../platform/tracing.ts';
import type { BrokerMetrics, CommandResult } from './broker.metrics.ts';
import { commandApplied, insertCommand } from './broker.sql.ts';
import type { CommandHandler, CommandOutcome, IncomingCommand } from './broker.ts';

// A command that can never succeed: dead-lettered with this message.
export class PoisonCommandError extends Error {}

// The command's message id was applied before: acknowledged, not applied again.
class AlreadyAppliedError extends Error {}

export type CommandContext = Readonly<{
  db: Db;
  identity: Identity;
  messageId: string;
  command: IncomingCommand;
  operations: OperationsConfig;
  // The change's first statement, in its transaction: records the message id, or throws when
  // it was recorded before.
  claim: (tx: Queryable) => Promise<void>;
}>;

export type CommandSpec = Readonly<{
  // the permission the HTTP route requires
  permission: string;
  // Applies the command; throws PoisonCommandError (or a client error) when it never can.
  run: (ctx: CommandContext) => Promise<void>;
}>;

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

// Every command type; orders.place joins as one more entry (placeOrder with the message id as
// its idempotency key).
export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  'movies.import': { permission: 'movies:write', run: importCommand },
};

const MAX_ATTEMPTS = 10;
const MAX_RETRY_DELAY_MS = 10_000;

export type CommandDeps = Readonly<{
  db: Db;
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

const reasonOf = (err: unknown): string => {
  if (err instanceof PoisonCommandError) return err.message;
  const { error } = errorResponse(err);
  return typeof error === 'string' ? error : JSON.stringify(error);
};

// Client errors (4xx) never succeed on a retry; 429 and 5xx (the database down) may.
const isPermanent = (err: unknown): boolean => {
  if (err instanceof PoisonCommandError) return true;
  const { status } = errorResponse(err);
  return status < 500 && status !== 429;
};

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
      if (isPermanent(err) || tried >= MAX_ATTEMPTS) {
        attempts.delete(key);
        const reason = isPermanent(err)
          ? reasonOf(err)
          : `gave up after ${tried} attempts: ${(err as Error).message}`;
        deps.logger.warn({ message_id: command.messageId, type, reason }, 'command dead-lettered');
        return settle(type, 'dead', { kind: 'dead', reason });
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
  const refused = permissionRefusal(identity, spec.permission);
  if (refused) throw refused;
  if (await commandApplied(deps.db, messageId)) return 'duplicate';
  try {
    await spec.run({
      db: deps.db,
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
