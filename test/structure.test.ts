// The structure rules of test/structure.ts, run with the suite: src/ keeps them, and the check
// still catches each kind of break (a small tree under test/fixtures/structure breaks them all).
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { checkStructure, formatViolation } from './structure.ts';

test('when src/ is read, then no import cycle, no import against the layers, nothing over the size limits', () => {
  assert.deepEqual(checkStructure(resolve(import.meta.dirname, '..')).map(formatViolation), []);
});

test('when a tree breaks each rule, then each break not excused is named with its file, import or function, and rule', () => {
  const modules = {
    platform: { layer: 'platform', uses: [] },
    accounts: { layer: 'domain', uses: ['platform'] },
  } as const;
  const exceptions = [
    { file: 'src/accounts/account.ts', rule: 'function size', name: 'account' },
    { file: 'src/extra/loose.ts', rule: 'file size' },
  ] as const;
  const found = checkStructure(resolve(import.meta.dirname, 'fixtures/structure'), modules, exceptions);
  assert.deepEqual(found.map(formatViolation).sort(), [
    'src/accounts/account.ts:2: [file cycle] imports src/platform/base.ts, which leads back: src/accounts/account.ts → src/platform/base.ts → src/accounts/account.ts',
    'src/accounts/account.ts:2: [module cycle] imports src/platform/base.ts, and module platform leads back to accounts: accounts → platform → accounts',
    'src/extra/loose.ts:1: [file size] EXCEPTIONS (test/structure.ts) excuses the file, which keeps the rule now: remove the entry',
    'src/extra/loose.ts:1: [layer] module extra has no row in MODULES (test/structure.ts)',
    'src/platform/base.ts:5: [layer] imports src/accounts/account.ts: an upward import (platform → domain)',
  ]);
});
