// The one table that turns a failed call into a gRPC status. The REST answer is worked out
// first, by the error table of the API the service mirrors (the book's for movies, seed 002's
// for products and orders), so the status carries REST's message; its HTTP status picks the
// code, and its details (field violations, when to retry) travel as the standard google.rpc
// details.
import { create } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  BadRequest_FieldViolationSchema,
  BadRequestSchema,
  RetryInfoSchema,
} from '../../gen/google/rpc/error_details_pb.ts';
import { apiErrorResponse } from '../api-v1/api.ts';
import { IdempotencyKeyBusyError } from '../orders/order.ts';
import { errorResponse, ValidationError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import { RuleViolationError } from '../products/product.ts';

// Whose messages a service's errors carry.
export type Dialect = 'book' | 'products';

// The HTTP status of the REST answer → the gRPC code. Anything else (500) is INTERNAL.
export const STATUS_CODES: ReadonlyMap<number, Code> = new Map([
  [400, Code.InvalidArgument],
  [401, Code.Unauthenticated],
  [403, Code.PermissionDenied],
  [404, Code.NotFound],
  // the edit conflict (an expected version that is not the current one), a busy resource
  [409, Code.FailedPrecondition],
  [413, Code.ResourceExhausted],
  [422, Code.InvalidArgument],
  [429, Code.ResourceExhausted],
  [503, Code.Unavailable],
]);

// Failures whose code is not their HTTP status's. REST's 409 covers both a conflict that a retry
// does not cure (an edit conflict, an order that has ended: FAILED_PRECONDITION) and a placement
// whose idempotency key another one still holds, which the same call cures once that one commits:
// ABORTED, gRPC's code for "retry the whole call".
const CODES_BY_ERROR: ReadonlyArray<readonly [abstract new (...args: never[]) => Error, Code]> = [
  [IdempotencyKeyBusyError, Code.Aborted],
];

type RestAnswer = Readonly<{ status: number; message: string; retryAfter?: string }>;

function restAnswer(err: unknown, dialect: Dialect): RestAnswer {
  if (dialect === 'products') {
    const answer = apiErrorResponse(err);
    return { status: answer.code, message: answer.message, retryAfter: answer.headers?.['retry-after'] };
  }
  const answer = errorResponse(err);
  const message =
    typeof answer.error === 'string'
      ? answer.error
      : Object.entries(answer.error)
          .map(([field, problem]) => `${field}: ${problem}`)
          .join('; ');
  return { status: answer.status, message, retryAfter: answer.headers?.['retry-after'] };
}

// The status of a call that failed with `err`. A ConnectError (a deadline, a malformed
// request, one of our own) is already one; a failure no row maps is a bug, logged here.
export function toConnectError(err: unknown, dialect: Dialect, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  const answer = restAnswer(err, dialect);
  const code =
    CODES_BY_ERROR.find(([errorClass]) => err instanceof errorClass)?.[1] ?? STATUS_CODES.get(answer.status);
  if (code === undefined) {
    logger.error({ err }, 'gRPC call failed');
    return new ConnectError(answer.message, Code.Internal);
  }
  const error = new ConnectError(answer.message, code);
  const violations = fieldViolationsOf(err);
  if (violations) {
    const fieldViolations = Object.entries(violations).map(([field, description]) =>
      create(BadRequest_FieldViolationSchema, { field, description }),
    );
    error.details.push({ desc: BadRequestSchema, value: { fieldViolations } });
  }
  if (answer.retryAfter !== undefined) {
    const retryDelay = create(DurationSchema, { seconds: BigInt(answer.retryAfter) });
    error.details.push({ desc: RetryInfoSchema, value: { retryDelay } });
  }
  return error;
}

// The fields a failed validation blames: every failing one of the book's, the one a broken rule
// names.
function fieldViolationsOf(err: unknown): Readonly<Record<string, string>> | undefined {
  if (err instanceof ValidationError) return err.fields;
  if (err instanceof RuleViolationError && err.field !== undefined) return { [err.field]: err.message };
  return undefined;
}
