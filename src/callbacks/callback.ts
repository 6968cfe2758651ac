// A callback is a list of object ids posted to POST /callback: {"object_ids": [1, 2, 2, 7]}.
// Each id names an object whose details (is it online?) come from the upstream service.
import { type Static, Type } from 'typebox';
import { BadRequestError } from '../platform/errors.ts';
import { plainReader, withReader } from '../platform/request.ts';

export const MAX_IDS_PER_CALLBACK = 10_000;

// An accepted callback as stored in the intake: its distinct ids and when it arrived.
export type CallbackBatch = Readonly<{
  id: number;
  objectIds: readonly number[];
  receivedAt: Date;
  attempts: number;
  // Older than the TTL when claimed: its objects are due for deletion whatever they are.
  expired: boolean;
}>;

// What the upstream says about one object.
export type ObjectStatus = Readonly<{ id: number; online: boolean }>;

const NOT_IDS = 'object_ids must be an array of non-negative integers';

// {"object_ids": [1, 2, 2, 7]}. Keys other than object_ids are ignored: a receiver of
// callbacks stays lenient about what senders add. Ids above 2^53 - 1 cannot be represented
// exactly by JSON.parse and are refused.
const CallbackSchema = Type.Object({
  object_ids: Type.Array(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), {
    maxItems: MAX_IDS_PER_CALLBACK,
    examples: [[1, 2, 3]],
  }),
});
const readCallback = plainReader(CallbackSchema, {
  notObject: 'body must be a JSON object',
  missing: { object_ids: () => new BadRequestError('body must contain object_ids') },
  invalid: { object_ids: NOT_IDS },
  tooMany: { object_ids: (max) => `object_ids must not contain more than ${max} ids` },
});
export const CallbackBody = withReader(CallbackSchema, readCallback);

// The body's ids, distinct and ascending, and how many were sent: one lookup per id however
// often it is repeated, and ascending so that concurrent upserts lock rows in the same order.
export function callbackIds(body: Static<typeof CallbackBody>): { objectIds: number[]; sent: number } {
  const ids = body.object_ids;
  return { objectIds: [...new Set(ids)].sort((a, b) => a - b), sent: ids.length };
}

// The upstream answers text/plain whose body is JSON; anything else is a failed lookup.
export function parseObjectStatus(text: string, askedFor: number): ObjectStatus {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('upstream answer is not JSON');
  }
  const { id, online } = (value ?? {}) as { id?: unknown; online?: unknown };
  if (id !== askedFor) throw new Error(`upstream answered for id ${String(id)}, not ${askedFor}`);
  if (typeof online !== 'boolean') throw new Error('upstream answer has no boolean "online"');
  return { id, online };
}
