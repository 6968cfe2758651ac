// GET /.well-known/jwks.json: the public keys that verify our EdDSA JWTs, for other services.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { BEARER_OPTIONAL, errors, response } from '../platform/schemas.ts';
import type { Jwts } from './jwt.ts';

const Jwks = Type.Object(
  {
    keys: Type.Array(
      Type.Object({
        kty: Type.String({ examples: ['OKP'] }),
        crv: Type.String({ examples: ['Ed25519'] }),
        x: Type.String(),
        kid: Type.String(),
        alg: Type.String({ examples: ['EdDSA'] }),
        use: Type.String({ examples: ['sig'] }),
      }),
    ),
  },
  { additionalProperties: false },
);

export const JWKS_PATH = '/.well-known/jwks.json';

// Only with asymmetric keys (-jwt-alg EdDSA): an HS256 secret has nothing to publish.
export async function jwksRoute(app: FastifyInstance, { jwts }: { jwts: Jwts }): Promise<void> {
  if (!jwts.jwks()) return;
  app.get(
    JWKS_PATH,
    {
      schema: {
        operationId: 'getJwks',
        summary: 'The public keys (JWK Set) that verify the EdDSA JWTs this service signs',
        tags: ['auth'],
        security: BEARER_OPTIONAL,
        response: { 200: response(Jwks, 'The JWK Set, current and still-valid previous keys'), ...errors() },
      },
    },
    async () => jwts.jwks(),
  );
}
