// The stand-in provider's book, in memory: charges and refunds as the contract states them
// (docs/payments.md), and the answer first given to each idempotency key, so that a repeated
// key gets that answer again and never a second charge. Everything here is synchronous: one
// request's check of its key and the charge it applies happen in one turn of the event loop,
// so two requests with one key cannot both apply.
import { randomBytes } from 'node:crypto';

export type Answer = Readonly<{ status: number; body: unknown }>;

export type LedgerCharge = {
  id: string;
  amount: number;
  currency: 'usd';
  reference: string;
  source: string;
  status: 'succeeded' | 'declined';
  refunded: number;
  idempotency_key: string;
  created_at: string;
};

export type LedgerRefund = {
  id: string;
  charge: string;
  amount: number;
  status: 'succeeded';
  idempotency_key: string;
  created_at: string;
};

// As Stripe caps a charge: $999,999.99.
const MAX_AMOUNT = 99_999_999;
const MAX_TEXT = 255;

const failure = (status: number, code: string, message?: string): Answer => ({
  status,
  body: { error: message ? { code, message } : { code } },
});

export class Ledger {
  readonly charges: LedgerCharge[] = [];
  readonly refunds: LedgerRefund[] = [];
  readonly #byId = new Map<string, LedgerCharge>();
  readonly #keys = new Map<string, { fingerprint: string; answer: Answer }>();

  // The answer to a POST: the first answer again for a key already used with the same
  // request, 422 for a key used with another one, else `apply`'s answer, remembered under
  // the key unless it is a 400 (a request the provider refused to read is not one it keeps).
  answer(key: string, path: string, payload: unknown, apply: () => Answer): Answer & { replayed: boolean } {
    const fingerprint = `${path} ${canonical(payload)}`;
    const first = this.#keys.get(key);
    if (first) {
      if (first.fingerprint === fingerprint) return { ...first.answer, replayed: true };
      return {
        ...failure(422, 'idempotency_key_reused', 'this key was used with another request'),
        replayed: false,
      };
    }
    const answer = apply();
    if (answer.status !== 400) this.#keys.set(key, { fingerprint, answer });
    return { ...answer, replayed: false };
  }

  // `declined`: why the card is refused, or undefined when it is not.
  charge(key: string, payload: unknown, declined: (source: string) => string | undefined): Answer {
    const fields = readFields(payload, {
      amount: 'amount',
      currency: 'text',
      reference: 'text',
      source: 'text',
    });
    if (typeof fields === 'string') return failure(400, 'invalid_request', fields);
    if (fields.currency !== 'usd') return failure(400, 'invalid_request', 'currency must be "usd"');
    const source = fields.source as string;
    const code = source.startsWith('tok_') ? declined(source) : 'invalid_source';
    const charge: LedgerCharge = {
      id: newId('ch_'),
      amount: fields.amount as number,
      currency: 'usd',
      reference: fields.reference as string,
      source,
      status: code === undefined ? 'succeeded' : 'declined',
      refunded: 0,
      idempotency_key: key,
      created_at: new Date().toISOString(),
    };
    this.charges.push(charge);
    this.#byId.set(charge.id, charge);
    if (code !== undefined) return failure(402, code);
    return { status: 201, body: { id: charge.id, status: 'succeeded', amount: charge.amount } };
  }

  refund(key: string, payload: unknown): Answer {
    const fields = readFields(payload, { charge: 'text', amount: 'amount' });
    if (typeof fields === 'string') return failure(400, 'invalid_request', fields);
    const charge = this.#byId.get(fields.charge as string);
    if (!charge) return failure(404, 'resource_missing', `no such charge: ${fields.charge}`);
    if (charge.status !== 'succeeded') return failure(400, 'charge_not_succeeded', 'the charge was declined');
    const amount = fields.amount as number;
    if (amount > charge.amount - charge.refunded) {
      return failure(
        400,
        'amount_too_large',
        `refund of ${amount} is more than the ${charge.amount - charge.refunded} left of the charge`,
      );
    }
    charge.refunded += amount;
    const refund: LedgerRefund = {
      id: newId('re_'),
      charge: charge.id,
      amount,
      status: 'succeeded',
      idempotency_key: key,
      created_at: new Date().toISOString(),
    };
    this.refunds.push(refund);
    return { status: 201, body: { id: refund.id, status: 'succeeded', amount } };
  }
}

function newId(prefix: string): string {
  return prefix + randomBytes(12).toString('hex');
}

// A body's fields checked against what the operation takes (every field required, no
// other); the first problem as a message.
function readFields(
  payload: unknown,
  wanted: Readonly<Record<string, 'amount' | 'text'>>,
): Record<string, unknown> | string {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return 'the body must be a JSON object';
  }
  const fields = payload as Record<string, unknown>;
  const unknown = Object.keys(fields).find((name) => !(name in wanted));
  if (unknown !== undefined) return `unknown field: ${unknown}`;
  for (const [name, kind] of Object.entries(wanted)) {
    const value = fields[name];
    if (
      kind === 'amount' &&
      !(Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= MAX_AMOUNT)
    ) {
      return `${name} must be a whole number of cents from 1 to ${MAX_AMOUNT}`;
    }
    if (kind === 'text' && !(typeof value === 'string' && value.length >= 1 && value.length <= MAX_TEXT)) {
      return `${name} must be a string of 1 to ${MAX_TEXT} characters`;
    }
  }
  return fields;
}

// The same JSON value written one way whatever the order of its keys, so that a request
// repeated with its fields in another order is the same request.
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
