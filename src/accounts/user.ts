// The user type, its input shapes and the book's rules for names, e-mails and passwords.
import { type Static, Type } from 'typebox';
import { bookBody } from '../platform/json-body.ts';
import { isStorable, NUL_MESSAGE, Validator } from '../platform/validator.ts';

export const ROLES = ['user', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export type User = {
  id: number;
  createdAt: Date;
  name: string;
  email: string;
  passwordHash: Buffer;
  activated: boolean;
  version: number;
  // The products API's role (migration 000011); the book's rules ignore it.
  role: Role;
  // Bumped to end every JWT issued before (password reset, role change, log out everywhere).
  tokenGeneration: number;
};

// An authenticated user as the request pipeline sees it: one query brings the permissions.
// `scopes` is set when the credential (an API key, `apiKeyId`) may do less than its user:
// only these codes, and `permissions` already cut down to them.
export type Identity = User & {
  permissions: readonly string[];
  scopes?: readonly string[];
  apiKeyId?: number;
};

// Request bodies. Fields are required in the document; one left out is Go's zero value and
// fails validation (422), not decoding.
// Limits written once: the schema's prose and the checks below use them (bytes, which JSON
// Schema's maxLength cannot state). bcrypt reads no further than 72 bytes.
const MAX_NAME_BYTES = 500;
export const PASSWORD_BYTES = { min: 8, max: 72 } as const;

const Name = Type.String({ description: `at most ${MAX_NAME_BYTES} bytes`, examples: ['Alice Smith'] });
const Email = Type.String({ format: 'email', examples: ['alice@example.com'] });
const Password = Type.String({
  description: `${PASSWORD_BYTES.min} to ${PASSWORD_BYTES.max} bytes`,
  examples: ['pa55word'],
});
const Token = Type.String({
  description: 'the 26-character token from the mail',
  examples: ['Y3QMGX3PJ3WLRL2YRTQGQ6KRHU'],
});

const body = <T extends Parameters<typeof Type.Object>[0]>(properties: T, example: Record<string, string>) =>
  bookBody(Type.Object(properties, { additionalProperties: false, examples: [example] }));

export const RegisterUserBody = body(
  { name: Name, email: Email, password: Password },
  { name: 'Alice Smith', email: 'alice@example.com', password: 'pa55word' },
);
export const CredentialsBody = body(
  { email: Email, password: Password },
  { email: 'alice@example.com', password: 'pa55word' },
);
export const EmailBody = body({ email: Email }, { email: 'alice@example.com' });
export const TokenBody = body({ token: Token }, { token: 'Y3QMGX3PJ3WLRL2YRTQGQ6KRHU' });
export const PasswordResetBody = body(
  { password: Password, token: Token },
  { password: 'new-pa55word', token: 'Y3QMGX3PJ3WLRL2YRTQGQ6KRHU' },
);

// The book's EmailRX (from the HTML5 spec).
const EMAIL_RX =
  /^[a-zA-Z0-9.!#$%&'*+\\/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

export function isValidEmail(email: string): boolean {
  return EMAIL_RX.test(email);
}

export function checkEmail(v: Validator, email: string): void {
  v.check(email !== '', 'email', 'must be provided');
  v.check(EMAIL_RX.test(email), 'email', 'must be a valid email address');
}

export function checkPasswordPlaintext(v: Validator, password: string): void {
  v.check(password !== '', 'password', 'must be provided');
  const bytes = Buffer.byteLength(password);
  v.check(bytes >= PASSWORD_BYTES.min, 'password', `must be at least ${PASSWORD_BYTES.min} bytes long`);
  v.check(bytes <= PASSWORD_BYTES.max, 'password', `must not be more than ${PASSWORD_BYTES.max} bytes long`);
}

export function checkTokenPlaintext(v: Validator, token: string): void {
  v.check(token !== '', 'token', 'must be provided');
  v.check(Buffer.byteLength(token) === 26, 'token', 'must be 26 bytes long');
}

export function checkName(v: Validator, name: string): void {
  v.check(name !== '', 'name', 'must be provided');
  v.check(
    Buffer.byteLength(name) <= MAX_NAME_BYTES,
    'name',
    `must not be more than ${MAX_NAME_BYTES} bytes long`,
  );
  v.check(isStorable(name), 'name', NUL_MESSAGE);
}

export function validateNewUser(input: { name?: string; email?: string; password?: string }): void {
  const v = new Validator();
  checkName(v, input.name ?? '');
  checkEmail(v, input.email ?? '');
  checkPasswordPlaintext(v, input.password ?? '');
  v.assertValid();
}

export const UserJsonSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    created_at: Type.String({ format: 'date-time', examples: ['2026-11-29T10:00:00Z'] }),
    name: Type.String(),
    email: Type.String(),
    activated: Type.Boolean(),
  },
  { additionalProperties: false },
);

export type UserJson = Static<typeof UserJsonSchema>;

// RFC 3339 like Go's time.Time; created_at has whole seconds (timestamp(0)).
export function toUserJson(user: User): UserJson {
  return {
    id: user.id,
    created_at: user.createdAt.toISOString().replace('.000Z', 'Z'),
    name: user.name,
    email: user.email,
    activated: user.activated,
  };
}
