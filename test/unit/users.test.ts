// The account rules that stay in code (src/accounts/user.ts): the book's e-mail pattern and
// limits counted in bytes, not characters, every failing field reported at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidEmail, validateNewUser } from '../../src/accounts/user.ts';
import { fieldErrors } from './field-errors.ts';

function refusals(input: { name?: string; email?: string; password?: string }): Record<string, string> {
  return fieldErrors(() => validateNewUser(input));
}

const ALICE = { name: 'Alice', email: 'alice@example.com', password: 'pa55word' };

test('when every field is left out, then each is refused at once with "must be provided"', () => {
  assert.deepEqual(refusals({}), {
    name: 'must be provided',
    email: 'must be provided',
    password: 'must be provided',
  });
});

test('when a password is measured, then in bytes: "éééé" (8 bytes) and 72 bytes pass, "ééé" (6 bytes) does not', () => {
  assert.deepEqual(refusals({ ...ALICE, password: 'ééé' }), { password: 'must be at least 8 bytes long' });
  assert.deepEqual(refusals({ ...ALICE, password: 'éééé' }), {});
  assert.deepEqual(refusals({ ...ALICE, password: 'x'.repeat(72) }), {});
});

test('when the password is over 72 bytes (bcrypt ignores the rest), then it is refused', () => {
  assert.deepEqual(refusals({ ...ALICE, password: `${'x'.repeat(71)}é` }), {
    password: 'must not be more than 72 bytes long',
  });
});

test('when the name holds NUL or is over 500 bytes, then it is refused', () => {
  assert.deepEqual(refusals({ ...ALICE, name: 'a\u0000' }), { name: 'must not contain the NUL character' });
  assert.deepEqual(refusals({ ...ALICE, name: 'é'.repeat(251) }), {
    name: 'must not be more than 500 bytes long',
  });
});

test("when an address matches the book's pattern, then it is valid; otherwise not", () => {
  for (const email of ['alice@example.com', 'a.b+c@sub.example.org', 'x@localhost', "o'brien@example.ie"]) {
    assert.ok(isValidEmail(email), email);
  }
  for (const email of [
    'alice',
    'alice@',
    '@example.com',
    'a@-example.com',
    'a b@example.com',
    'a@example..com',
  ]) {
    assert.equal(isValidEmail(email), false, email);
  }
});
