// Response schemas of seed 002's API: its `{code, message}` error envelope, and the statuses
// each of its routes can answer, for serialization and the OpenAPI document alike.
import { type TSchema, Type } from 'typebox';
import { emptyResponse, RATE_LIMITED_HEADERS, response } from '../platform/schemas.ts';

export const ApiError = Type.Object(
  {
    code: Type.Integer({ description: 'the HTTP status again', examples: [404] }),
    message: Type.String({ examples: ['not_found: product with id 7 does not exist'] }),
  },
  { additionalProperties: false },
);

const DESCRIPTIONS: Readonly<Record<number, string>> = {
  400: 'invalid request body, or an invalid id in the path',
  401: 'authorization header is required, authorization header format must be: Bearer {token}, auth: invalid token, auth: token has expired, or auth: invalid email or password',
  403: 'forbidden: you do not own this product, or you do not have permission to perform this action',
  404: 'not_found: the record does not exist',
  409: 'conflict: the order cannot be cancelled in its state, or a request with this Idempotency-Key is still in progress',
  413: 'request body too large (over 1 MiB)',
  422: 'validation: the message names the broken rule',
  429: 'rate limit exceeded, or too many failed logins (Retry-After)',
  500: 'internal server error (details in the log only)',
};

const HEADERS: Readonly<Record<number, Parameters<typeof response>[2]>> = {
  401: {
    'WWW-Authenticate': {
      type: 'string',
      description: '"Bearer" when the token is malformed, unknown or expired',
    },
  },
  429: RATE_LIMITED_HEADERS,
};

// The error responses of a route: the given statuses plus 429, which every route has.
export function apiErrors(...statuses: number[]): Record<number, TSchema> {
  const all = [...new Set([...statuses, 429])].sort();
  return Object.fromEntries(
    all.map((status) => [status, response(ApiError, DESCRIPTIONS[status] as string, HEADERS[status])]),
  );
}

export const NoContent = (description: string) => emptyResponse(description);
