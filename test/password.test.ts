import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashPassword, passwordMatches } from '../src/accounts/password.ts';

test('when a $2a$ hash comes from another bcrypt (the OpenBSD vector Go also passes), then it verifies', async () => {
  const hash = Buffer.from('$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW');
  assert.equal(await passwordMatches('U*U', hash), true);
  assert.equal(await passwordMatches('U*V', hash), false);
});

test('when a password is hashed, then it is $2a$ at cost 12, like Go writes', async () => {
  const hash = await hashPassword('pa55word');
  assert.match(hash.toString(), /^\$2a\$12\$[./A-Za-z0-9]{53}$/);
  assert.equal(await passwordMatches('pa55word', hash), true);
});
