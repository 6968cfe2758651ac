// isDatabaseUnavailable (src/platform/errors.ts) on errors built by hand: which failures are
// an outage (503 with Retry-After) and which are a query of ours failing (500). The errors
// real sockets and a real PostgreSQL raise are in test/outage.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDatabaseUnavailable } from '../../src/platform/errors.ts';

function withCode(code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`error ${code}`), { code, ...extra });
}

test('when the connection cannot be made or was lost, then it is an outage', () => {
  for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']) {
    assert.ok(isDatabaseUnavailable(withCode(code)), code);
  }
});

test('when PostgreSQL is shutting down, starting, out of slots or lost the connection, then it is an outage', () => {
  for (const sqlstate of ['57P01', '57P02', '57P03', '53300', '08000', '08006', '08P01']) {
    assert.ok(isDatabaseUnavailable(withCode(sqlstate)), sqlstate);
  }
});

test('when a query fails on its own (constraint, syntax, cancelled), then it is not an outage', () => {
  for (const sqlstate of ['23505', '42601', '57014', '40001', '22P02']) {
    assert.equal(isDatabaseUnavailable(withCode(sqlstate)), false, sqlstate);
  }
});

test('when ECONNRESET comes from a socket call, then it is an outage; without one it is a client hanging up', () => {
  assert.ok(isDatabaseUnavailable(withCode('ECONNRESET', { syscall: 'read' })));
  assert.equal(isDatabaseUnavailable(withCode('ECONNRESET')), false);
});

test('when node-postgres says the connection timed out or ended, then it is an outage', () => {
  assert.ok(isDatabaseUnavailable(new Error('timeout exceeded when trying to connect')));
  assert.ok(isDatabaseUnavailable(new Error('Connection terminated unexpectedly')));
});

test('when the outage is the cause of a wrapping error or one of an AggregateError, then it is found', () => {
  const refused = withCode('ECONNREFUSED');
  assert.ok(isDatabaseUnavailable(new Error('query failed', { cause: refused })));
  assert.ok(isDatabaseUnavailable(new AggregateError([new Error('other'), refused])));
});

test('when the cause is wrapped more than three times, then the search stops', () => {
  let err: Error = withCode('ECONNREFUSED');
  for (let depth = 0; depth < 3; depth++) err = new Error('wrapped', { cause: err });
  assert.ok(isDatabaseUnavailable(err));
  assert.equal(isDatabaseUnavailable(new Error('wrapped', { cause: err })), false);
});

test('when the value thrown is not an Error, then it is not an outage', () => {
  for (const thrown of [undefined, null, 'ECONNREFUSED', { code: 'ECONNREFUSED' }]) {
    assert.equal(isDatabaseUnavailable(thrown), false, String(thrown));
  }
});
