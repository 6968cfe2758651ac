// Properties of the token bucket (src/platform/rate-limit.ts) over any sequence of requests:
// what it lets through is bounded as Go's x/time/rate promises. The worked examples are in
// test/rate-limiter.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RateLimitedError } from '../../src/platform/errors.ts';
import { MAX_RETRY_AFTER_SECONDS, RateLimiter, retryAfterSeconds } from '../../src/platform/rate-limit.ts';

const settings = fc.record({ rps: fc.integer({ min: 1, max: 50 }), burst: fc.integer({ min: 1, max: 20 }) });
// Milliseconds between one request and the next.
const gaps = fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 200 });

// The times (ms) of the requests the limiter let through.
function allowed(rps: number, burst: number, requestGaps: number[]): number[] {
  let now = 0;
  const limiter = new RateLimiter({ settings: { rps, burst }, now: () => now });
  const passed: number[] = [];
  for (const gap of requestGaps) {
    now += gap;
    try {
      limiter.take('client');
      passed.push(now);
    } catch (err) {
      assert.ok(err instanceof RateLimitedError);
    }
  }
  return passed;
}

test('when requests arrive at any times, then no window lets through more than burst plus rps per second', () => {
  fc.assert(
    fc.property(settings, gaps, ({ rps, burst }, requestGaps) => {
      const passed = allowed(rps, burst, requestGaps);
      for (let i = 0; i < passed.length; i++) {
        for (let j = i; j < passed.length; j++) {
          const windowMs = (passed[j] as number) - (passed[i] as number);
          assert.ok(j - i + 1 <= burst + (windowMs / 1000) * rps + 1e-9, `${j - i + 1} in ${windowMs} ms`);
        }
      }
    }),
  );
});

test('when requests are spaced at least 1/rps apart, then none is refused', () => {
  fc.assert(
    fc.property(settings, gaps, ({ rps, burst }, requestGaps) => {
      const spaced = requestGaps.map((gap) => Math.ceil(1000 / rps) + gap);
      assert.equal(allowed(rps, burst, spaced).length, spaced.length);
    }),
  );
});

test('when a client is refused, then waiting the Retry-After it was given brings a token back', () => {
  fc.assert(
    fc.property(settings, ({ rps, burst }) => {
      let now = 0;
      const limiter = new RateLimiter({ settings: { rps, burst }, now: () => now });
      for (let i = 0; i < burst; i++) limiter.take('client');
      const refusal = (() => {
        try {
          limiter.take('client');
        } catch (err) {
          return err;
        }
      })();
      assert.ok(refusal instanceof RateLimitedError);
      now += refusal.retryAfterSeconds * 1000;
      limiter.take('client');
    }),
  );
});

test('when a bucket holds any fraction of a token, then Retry-After is a whole number of seconds, at least 1', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      fc.integer({ min: 1, max: 1000 }),
      (tokens, rps) => {
        const seconds = retryAfterSeconds(tokens, rps);
        assert.ok(Number.isInteger(seconds) && seconds >= 1);
        assert.ok(tokens + seconds * rps >= 1 - 1e-9);
      },
    ),
  );
});

test('when the rate is tiny or not a number, then Retry-After is still a whole number of seconds, capped', () => {
  for (const rps of [1e-320, 1e-9, 0, Number.NaN]) {
    const seconds = retryAfterSeconds(0, rps);
    assert.ok(Number.isInteger(seconds), `${rps}: ${seconds}`);
    assert.ok(seconds >= 1 && seconds <= MAX_RETRY_AFTER_SECONDS, `${rps}: ${seconds}`);
  }
});
