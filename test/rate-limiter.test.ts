// The per-client token bucket, driven by a fake clock (milliseconds).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateLimitedError } from '../src/platform/errors.ts';
import { RateLimiter, type RateLimitOptions } from '../src/platform/rate-limit.ts';

function fakeClock(start = 0) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function limiter(
  options: Partial<Omit<RateLimitOptions, 'settings'>> & { rps?: number; burst?: number } = {},
) {
  const clock = fakeClock();
  const { rps = 2, burst = 4, ...rest } = options;
  const rl = new RateLimiter({ settings: { rps, burst }, now: clock.now, ...rest });
  return { rl, clock };
}

// The RateLimitedError that take() throws, or a failure if it lets the request through.
function refusal(rl: RateLimiter, key: string): RateLimitedError {
  try {
    rl.take(key);
  } catch (err) {
    assert.ok(err instanceof RateLimitedError, `expected a RateLimitedError, got ${String(err)}`);
    return err;
  }
  return assert.fail(`expected ${key} to be rate limited`);
}

describe('RateLimiter: burst and refill', () => {
  test('when a client sends its burst at once, then all pass and the next one is refused', () => {
    const { rl } = limiter({ rps: 2, burst: 4 });
    for (let i = 0; i < 4; i++) rl.take('1.2.3.4');
    const err = refusal(rl, '1.2.3.4');
    assert.equal(err.message, 'rate limit exceeded');
    assert.equal(err.retryAfterSeconds, 1);
  });

  test('when refused, then retryAfterSeconds is the whole seconds until the next token', () => {
    const { rl, clock } = limiter({ rps: 0.1, burst: 1 });
    rl.take('a');
    assert.equal(refusal(rl, 'a').retryAfterSeconds, 10);
    clock.advance(5000);
    assert.equal(refusal(rl, 'a').retryAfterSeconds, 5);
    clock.advance(4500);
    assert.equal(refusal(rl, 'a').retryAfterSeconds, 1);
  });

  test('when refused, then the refused request does not use up a token', () => {
    const { rl, clock } = limiter({ rps: 2, burst: 1 });
    rl.take('a');
    refusal(rl, 'a');
    refusal(rl, 'a');
    clock.advance(500);
    rl.take('a');
  });

  test('when time passes, then tokens come back at rps', () => {
    const { rl, clock } = limiter({ rps: 2, burst: 4 });
    for (let i = 0; i < 4; i++) rl.take('a');
    clock.advance(499); // 0.998 tokens
    refusal(rl, 'a');
    clock.advance(11); // 1.018 tokens
    rl.take('a');
    refusal(rl, 'a');
    clock.advance(1000);
    rl.take('a');
    rl.take('a');
    refusal(rl, 'a');
  });

  test('when a client stays away a long time, then it gets back no more than its burst', () => {
    const { rl, clock } = limiter({ rps: 2, burst: 4, idleMs: Number.MAX_SAFE_INTEGER });
    rl.take('a');
    clock.advance(3_600_000);
    for (let i = 0; i < 4; i++) rl.take('a');
    refusal(rl, 'a');
  });

  test('when one client is limited, then other clients are not', () => {
    const { rl } = limiter({ rps: 1, burst: 2 });
    rl.take('a');
    rl.take('a');
    refusal(rl, 'a');
    rl.take('b');
    rl.take('b');
    refusal(rl, 'b');
    refusal(rl, 'a');
  });
});

describe('RateLimiter: memory bounds', () => {
  test('when more clients than maxClients arrive, then the least recently used is forgotten', () => {
    const { rl } = limiter({ rps: 0.001, burst: 1, maxClients: 3 });
    rl.take('a');
    rl.take('b');
    rl.take('c');
    refusal(rl, 'a'); // a is now the most recently used; b the least
    rl.take('d'); // evicts b
    assert.equal(rl.size, 3);
    rl.take('b'); // b starts over with a full bucket; evicts c
    refusal(rl, 'a');
    refusal(rl, 'd');
    rl.take('c'); // c was forgotten too
    assert.equal(rl.size, 3);
  });

  test('when 100000 distinct clients arrive, then the map never holds more than maxClients', () => {
    const { rl, clock } = limiter({ maxClients: 1000 });
    let largest = 0;
    for (let i = 0; i < 100_000; i++) {
      rl.take(`client-${i}`);
      if (i % 7 === 0) clock.advance(1);
      largest = Math.max(largest, rl.size);
    }
    assert.equal(largest, 1000);
    assert.equal(rl.size, 1000);
  });

  test('when the default maxClients applies, then it is 100000', () => {
    const { rl } = limiter();
    for (let i = 0; i < 100_001; i++) rl.take(`c${i}`);
    assert.equal(rl.size, 100_000);
  });
});

describe('RateLimiter: idle sweep', () => {
  test('when every client has been idle longer than idleMs, then the next request sweeps them all', () => {
    const { rl, clock } = limiter({ idleMs: 1000 });
    rl.take('a');
    rl.take('b');
    rl.take('c');
    assert.equal(rl.size, 3);
    clock.advance(1001);
    rl.take('d');
    assert.equal(rl.size, 1);
  });

  test('when some clients are still fresh, then only the idle ones are swept', () => {
    const { rl, clock } = limiter({ idleMs: 1000 });
    rl.take('a');
    clock.advance(600);
    rl.take('b');
    clock.advance(401);
    rl.take('c');
    assert.equal(rl.size, 2); // a swept; b (401 ms idle) and c kept
  });

  test('when clients are idle exactly idleMs, then nothing is swept yet', () => {
    const { rl, clock } = limiter({ idleMs: 1000 });
    rl.take('a');
    clock.advance(1000);
    rl.take('b');
    assert.equal(rl.size, 2);
  });

  test('when a limited client is swept, then it starts over with a full bucket', () => {
    const { rl, clock } = limiter({ rps: 0.0001, burst: 2, idleMs: 1000 });
    rl.take('a');
    rl.take('a');
    refusal(rl, 'a');
    clock.advance(1001);
    rl.take('b');
    rl.take('a');
    rl.take('a');
    refusal(rl, 'a');
  });

  test('when the default idleMs applies, then clients idle over three minutes are swept', () => {
    const { rl, clock } = limiter();
    rl.take('a');
    clock.advance(3 * 60_000);
    rl.take('b');
    assert.equal(rl.size, 2);
    clock.advance(1);
    rl.take('c');
    assert.equal(rl.size, 2); // a swept
  });
});
