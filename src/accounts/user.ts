// The user type, its input shapes and the book's rules for names, e-mails and passwords.
import { Validator } from '../platform/validator.ts';

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

export const REGISTER_USER_INPUT = { name: 'string', email: 'string', password: 'string' } as const;
export const CREDENTIALS_INPUT = { email: 'string', password: 'string' } as const;
export const EMAIL_INPUT = { email: 'string' } as const;
export const TOKEN_INPUT = { token: 'string' } as const;
export const PASSWORD_RESET_INPUT = { password: 'string', token: 'string' } as const;

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
  v.check(Buffer.byteLength(password) >= 8, 'password', 'must be at least 8 bytes long');
  v.check(Buffer.byteLength(password) <= 72, 'password', 'must not be more than 72 bytes long');
}

export function checkTokenPlaintext(v: Validator, token: string): void {
  v.check(token !== '', 'token', 'must be provided');
  v.check(Buffer.byteLength(token) === 26, 'token', 'must be 26 bytes long');
}

export function checkName(v: Validator, name: string): void {
  v.check(name !== '', 'name', 'must be provided');
  v.check(Buffer.byteLength(name) <= 500, 'name', 'must not be more than 500 bytes long');
}

export function validateNewUser(input: { name?: string; email?: string; password?: string }): void {
  const v = new Validator();
  checkName(v, input.name ?? '');
  checkEmail(v, input.email ?? '');
  checkPasswordPlaintext(v, input.password ?? '');
  v.assertValid();
}

export type UserJson = { id: number; created_at: string; name: string; email: string; activated: boolean };

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
