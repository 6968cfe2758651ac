// A callback is a list of object ids posted to POST /callback: {"object_ids": [1, 2, 2, 7]}.
// Each id names an object whose details (is it online?) come from the upstream service.
import { BadRequestError } from '../platform/errors.ts';

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

const notIds = () => new BadRequestError('object_ids must be an array of non-negative integers');

// Returns the body's ids, distinct and ascending, and how many were sent: one lookup per id however often it is
// repeated, and ascending so that concurrent upserts lock rows in the same order.
// Keys other than object_ids are ignored: a receiver of callbacks stays lenient about what
// senders add. Ids above 2^53 - 1 cannot be represented exactly by JSON.parse and are refused.
export function parseCallbackBody(body: Buffer | undefined): { objectIds: number[]; sent: number } {
  if (!body || body.length === 0) throw new BadRequestError('body must not be empty');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequestError('body contains badly-formed JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError('body must be a JSON object');
  }
  const ids = (value as { object_ids?: unknown }).object_ids;
  if (ids === undefined) throw new BadRequestError('body must contain object_ids');
  if (!Array.isArray(ids)) throw notIds();
  if (ids.length > MAX_IDS_PER_CALLBACK) {
    throw new BadRequestError(`object_ids must not contain more than ${MAX_IDS_PER_CALLBACK} ids`);
  }
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) throw notIds();
  }
  return { objectIds: [...new Set(ids as number[])].sort((a, b) => a - b), sent: ids.length };
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
