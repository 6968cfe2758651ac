// Go-style durations of the flags (parseDuration in src/config.ts) as a property: any sequence
// of amounts with units is their sum. The worked examples are in test/config.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseDuration } from '../../src/config.ts';
import { MAX_DURATION_MS } from '../../src/platform/flags.ts';

const UNIT_MS = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;

test('when a duration is any sequence of whole amounts with units, then it is their sum in ms', () => {
  const part = fc.tuple(
    fc.nat({ max: 10_000 }),
    fc.constantFrom(...(Object.keys(UNIT_MS) as (keyof typeof UNIT_MS)[])),
  );
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), (parts) => {
      const text = parts.map(([amount, unit]) => `${amount}${unit}`).join('');
      const ms = parts.reduce((sum, [amount, unit]) => sum + amount * UNIT_MS[unit], 0);
      assert.equal(parseDuration(text), ms);
    }),
  );
});

test('when a number has no unit after it, then it is not a duration (only "0" is)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1 }), (n) => {
      assert.throws(() => parseDuration(String(n)), /not a duration/);
    }),
  );
});

test('when a duration is longer than Go allows (or Infinity), then it is refused, not read as a number', () => {
  for (const text of ['2562048h', '100000000000000000000h', `${'9'.repeat(400)}h`, '1h9223372036855s']) {
    assert.throws(() => parseDuration(text), /duration out of range/, text);
  }
  assert.equal(parseDuration('2562047h'), 2562047 * 3_600_000);
  assert.ok(parseDuration('2562047h') <= MAX_DURATION_MS);
});
