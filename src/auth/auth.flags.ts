// Flags of authentication: which credentials are accepted, how JWTs are signed and checked,
// and which OpenID Connect provider is trusted.
import { join, resolve } from 'node:path';
import { bool, check, duration, durationRange, type FlagValues, oneOf, text } from '../platform/flags.ts';
import type { Environment } from '../platform/process.flags.ts';

export const AUTH_METHODS = ['token', 'jwt', 'apikey', 'oidc'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

const JWT_ALGORITHMS = ['HS256', 'EdDSA'] as const;

// Words that mark a published example or a stand-in (compose.yaml's old default, the
// README's password), wherever they appear in a value reduced to lower-case letters and digits.
const PLACEHOLDER_WORDS = [
  'changeme',
  'replaceme',
  'yoursecret',
  'placeholder',
  'insertyour',
  'putyour',
  'example',
  'pa55word',
  'redacted',
];

// A value that stands in for a secret: it holds a placeholder word, is a few characters
// repeated (aaaa…, abcabc…, secretsecret…), or has no letter or digit at all.
function isPlaceholder(value: string): boolean {
  const normalized = value.toLowerCase().replace(/[^a-z0-9]/g, '');
  return (
    normalized === '' ||
    /^(.{1,8})\1+$/s.test(value) ||
    PLACEHOLDER_WORDS.some((word) => normalized.includes(word))
  );
}

function jwtSecretRule(secret: string): string | undefined {
  if (secret === '') return undefined;
  if (Buffer.byteLength(secret) < 32) return 'must be at least 32 bytes (256 bits) long';
  // The one secret this service verifies with: a published one lets anyone sign tokens. (The
  // other secrets are credentials presented to a server that judges them itself.)
  if (isPlaceholder(secret)) {
    return 'is a placeholder or published example, not a secret: set a real one (e.g. openssl rand -base64 32)';
  }
  return undefined;
}

export const authFlags = {
  'auth-methods': text({
    default: 'token,jwt,apikey',
    help: 'credentials accepted on every endpoint of both APIs',
  }),
  'jwt-alg': text({
    default: 'HS256',
    help: '`HS256` (one secret) or `EdDSA` (Ed25519 keys with ids, rotation, `GET /.well-known/jwks.json`)',
  }),
  // Empty: generated once and kept in <data-dir>/jwt-secret (development and staging).
  'jwt-secret': text({
    default: '',
    help: 'HS256 key of the JWTs, at least 32 bytes (`openssl rand -base64 32`); placeholders (`change-me…`, a few characters repeated, published examples) are refused; required in production, else generated into `<data-dir>/jwt-secret`',
    secret: true,
    rule: jwtSecretRule,
  }),
  'jwt-key-dir': text({
    default: '',
    help: 'with `EdDSA`: the signing keys, one 0600 file per key id (the first made when empty)',
    shownDefault: '`<data-dir>/jwt-keys`',
  }),
  'jwt-issuer': text({ default: 'greenlight', help: '`iss` of the JWTs issued and required' }),
  'jwt-audience': text({ default: 'greenlight', help: '`aud` of the JWTs issued and required' }),
  'jwt-ttl': duration({
    default: '24h',
    help: 'lifetime of a JWT (1s-720h)',
    rule: durationRange(1000, 720 * 3_600_000),
  }),
  'oidc-issuer': text({
    default: '',
    help: 'with `-auth-methods …,oidc`: the OpenID Connect issuer whose access tokens are accepted (https in production)',
  }),
  'oidc-audience': text({
    default: '',
    help: 'the `aud` the provider gives access tokens for this API (required with oidc)',
  }),
  'oidc-auto-provision': bool({
    default: 'false',
    help: 'make a new account for an unknown subject whose `email` is verified (`email_verified: true`) and has no account yet; existing accounts are linked only by `POST /v1/users/identities`',
  }),
  'oidc-jwks-cache': duration({
    default: '5m',
    help: "how long the provider's keys are trusted before they are fetched again (a key the provider drops keeps working at most this long; 1s-24h)",
    rule: durationRange(1000, 86_400_000),
  }),
};

function authMethodsOf(value: string): AuthMethod[] {
  const methods: AuthMethod[] = [];
  for (const method of value.split(',').map((m) => m.trim())) {
    check(
      oneOf(method, AUTH_METHODS),
      'auth-methods',
      `"${method}" is not one of ${AUTH_METHODS.join(', ')}`,
    );
    if (!methods.includes(method)) methods.push(method);
  }
  return methods;
}

function checkOidc(issuer: string, audience: string, methods: readonly AuthMethod[], env: Environment): void {
  if (methods.includes('oidc')) {
    check(issuer !== '', 'oidc-issuer', 'is required when -auth-methods includes oidc');
    check(audience !== '', 'oidc-audience', 'is required when -auth-methods includes oidc');
  }
  if (issuer !== '') {
    check(
      (env === 'production' ? /^https:\/\/\S+$/ : /^https?:\/\/\S+$/).test(issuer),
      'oidc-issuer',
      env === 'production' ? 'must be an https:// URL' : 'must be an http:// or https:// URL',
    );
  }
}

export function authConfig(v: FlagValues<typeof authFlags>, env: Environment, dataDir: string) {
  const methods = authMethodsOf(v['auth-methods']);
  const jwtAlgorithm = v['jwt-alg'];
  check(oneOf(jwtAlgorithm, JWT_ALGORITHMS), 'jwt-alg', 'must be HS256 or EdDSA');
  const jwtSecret = v['jwt-secret'];
  check(
    jwtSecret !== '' || env !== 'production' || !methods.includes('jwt') || jwtAlgorithm !== 'HS256',
    'jwt-secret',
    'is required when -env is production and -auth-methods includes jwt with HS256',
  );
  checkOidc(v['oidc-issuer'], v['oidc-audience'], methods, env);
  const jwtKeyDir = v['jwt-key-dir'];
  return {
    auth: Object.freeze({
      methods: Object.freeze(methods),
      jwtAlgorithm,
      jwtSecret,
      // EdDSA key pairs (src/auth/jwt-keys.ts)
      jwtKeyDir: jwtKeyDir === '' ? join(dataDir, 'jwt-keys') : resolve(jwtKeyDir),
      jwtIssuer: v['jwt-issuer'],
      jwtAudience: v['jwt-audience'],
      jwtTtlMs: v['jwt-ttl'],
      oidc: Object.freeze({
        issuer: v['oidc-issuer'],
        audience: v['oidc-audience'],
        autoProvision: v['oidc-auto-provision'],
        jwksCacheMs: v['oidc-jwks-cache'],
      }),
    }),
  };
}
