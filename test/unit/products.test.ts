// Seed 002's product rules that stay in code (src/products/product.ts): prices as exact
// NUMERIC(10,2) text, stock within PostgreSQL's integer, no NUL, and PATCH's "something sent".
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  RuleViolationError,
  validateNewProduct,
  validateProductChanges,
} from '../../src/products/product.ts';

function violation(work: () => unknown): string {
  try {
    work();
  } catch (err) {
    assert.ok(err instanceof RuleViolationError, String(err));
    return err.message;
  }
  assert.fail('no rule was broken');
}

describe('validateNewProduct', () => {
  test('when a price has at most two decimals below 10^8, then it is kept exactly as NUMERIC text', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99_999_999_99 }), (cents) => {
        const { price } = validateNewProduct({ name: 'p', price: cents / 100, stock: 0 });
        assert.equal(price, `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`);
      }),
    );
  });

  test('when a price has a third decimal, then it is refused rather than rounded', () => {
    for (const price of [0.001, 1.005, 149.999]) {
      assert.equal(
        violation(() => validateNewProduct({ name: 'p', price, stock: 0 })),
        'validation: price must have at most two decimal places',
        String(price),
      );
    }
  });

  test('when price or stock is negative or too large, then the seed message names it', () => {
    const cases: [Partial<{ price: number; stock: number }>, string][] = [
      [{ price: -0.01 }, 'validation: price cannot be negative'],
      [{ price: 100_000_000 }, 'validation: price must be less than 100000000'],
      [{ stock: -1 }, 'validation: stock cannot be negative'],
      [{ stock: 2_147_483_648 }, 'validation: stock must not be more than 2147483647'],
    ];
    for (const [fields, message] of cases) {
      assert.equal(
        violation(() => validateNewProduct({ name: 'p', price: 1, stock: 1, ...fields })),
        message,
      );
    }
  });

  test('when the name is only white space, then it is required; otherwise it is trimmed', () => {
    assert.equal(
      violation(() => validateNewProduct({ name: ' \t ' })),
      'validation: product name is required',
    );
    assert.equal(validateNewProduct({ name: '  lamp ' }).name, 'lamp');
  });

  test('when a text field holds NUL, then it is refused naming the field', () => {
    assert.equal(
      violation(() => validateNewProduct({ name: 'p', description: 'a\u0000' })),
      'validation: description must not contain a NUL character',
    );
  });
});

describe('validateProductChanges', () => {
  test('when nothing or only nulls are sent, then there is nothing to update', () => {
    assert.equal(
      violation(() => validateProductChanges({})),
      'validation: no fields provided for update',
    );
    assert.equal(
      violation(() => validateProductChanges({ name: null, price: null } as never)),
      'validation: no fields provided for update',
    );
  });

  test('when only some fields are sent, then only those are changed', () => {
    assert.deepEqual(validateProductChanges({ stock: 3 }), { stock: 3 });
    assert.deepEqual(validateProductChanges({ price: 2.5, description: '' }), {
      price: '2.50',
      description: '',
    });
  });

  test('when the name is sent empty, then it cannot be empty', () => {
    assert.equal(
      violation(() => validateProductChanges({ name: ' ' })),
      'validation: product name cannot be empty',
    );
  });
});
