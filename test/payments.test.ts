// The payments client against the stand-in provider, both real: the stand-in as a process
// through the CLI, and in-process where a test needs to script its faults. What is checked is
// money: the provider's ledger after declines, 5xx, lost answers, timeouts and an open
// circuit, and that a key never charges twice.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokenCircuitError } from 'cockatiel';
import fc from 'fast-check';
import prom from 'prom-client';
import { buildConfig, ConfigError, readSettings } from '../src/config.ts';
import type { LedgerCharge } from '../src/payments/ledger.ts';
import {
  type ChargeRequest,
  createPaymentsClient,
  PaymentProviderError,
  type PaymentsClientOptions,
  PaymentUnavailableError,
} from '../src/payments/payments.ts';
import { type PaymentsStandIn, type StandInOptions, startPaymentsStandIn } from '../src/payments/stand-in.ts';
import { captureLogger, type LogLine, waitFor } from './helpers.ts';
import { type Greenlight, greenlight, run } from './processes.ts';

let keys = 0;
const newKey = (what = 'key') => `${what}-${process.pid}-${++keys}`;

const chargeOf = (fields: Partial<ChargeRequest> = {}): ChargeRequest => ({
  amount: 1_500,
  currency: 'usd',
  reference: `order-${++keys}`,
  source: 'tok_visa',
  idempotencyKey: newKey('charge'),
  ...fields,
});

// Retries without waiting long: the policy is the client's, only its pauses are shorter.
const FAST: Partial<PaymentsClientOptions> = { retryInitialDelayMs: 5, retryMaxDelayMs: 20 };

function clientFor(t: TestContext, url: string, options: Partial<PaymentsClientOptions> = {}) {
  const registry = new prom.Registry();
  const { logger, lines } = captureLogger('debug');
  const client = createPaymentsClient({ url, timeoutMs: 2_000, logger, registry, ...FAST, ...options });
  t.after(() => client.close());
  const count = async (operation: string, outcome: string) => {
    const metric = (await registry.getSingleMetric('greenlight_payment_calls_total')?.get()) as
      | prom.MetricObjectWithValues<prom.MetricValue<string>>
      | undefined;
    return (
      metric?.values.find((v) => v.labels.operation === operation && v.labels.outcome === outcome)?.value ?? 0
    );
  };
  return { client, registry, lines, count };
}

async function standInFor(t: TestContext, options: StandInOptions = {}): Promise<PaymentsStandIn> {
  const standIn = await startPaymentsStandIn(options);
  t.after(() => standIn.close());
  return standIn;
}

const keysOf = (standIn: PaymentsStandIn) => standIn.calls.map((c) => c.idempotencyKey);

// The stand-in process's log of the calls it received, once `count` lines have come through
// the pipe (they may arrive after the answers did).
function loggedCalls(proc: Greenlight, count: number): Promise<LogLine[]> {
  const calls = () => proc.logs.filter((l) => l.msg === 'payment call');
  return waitFor(`${count} logged calls`, () => calls().length >= count && calls());
}

async function ledger(url: string): Promise<LedgerCharge[]> {
  const res = await fetch(`${url}/v1/charges`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { charges: LedgerCharge[] }).charges;
}

test('when the stand-in runs as `greenlight payments stand-in`, then the client charges, replays and is declined through it, the ledger shows it, and SIGTERM stops it', async (t) => {
  const proc = greenlight(t, [
    'payments',
    'stand-in',
    '-addr',
    '127.0.0.1:0',
    '-latency',
    '10ms',
    '-decline-rate',
    '1',
  ]);
  const url = String((await proc.waitForLog('payments stand-in started', 30_000)).url);
  const { client, count } = clientFor(t, url);

  // tok_visa always succeeds, whatever the decline rate.
  const request = chargeOf();
  const charged = await client.charge(request);
  assert.equal(charged.status, 'succeeded');
  assert.match(charged.status === 'succeeded' ? charged.id : '', /^ch_/);
  assert.deepEqual(await client.charge(request), charged, 'the same key answers the first answer');
  const declined = chargeOf({ source: 'tok_mastercard' });
  assert.deepEqual(await client.charge(declined), { status: 'declined', code: 'card_declined' });

  const charges = await ledger(url);
  assert.deepEqual(
    charges.map((c) => [c.reference, c.status, c.amount, c.refunded]),
    [
      [request.reference, 'succeeded', 1_500, 0],
      [declined.reference, 'declined', 1_500, 0],
    ],
  );
  assert.equal(charges[0]?.id, charged.status === 'succeeded' ? charged.id : '');
  assert.equal(charges[0]?.idempotency_key, request.idempotencyKey);
  assert.equal(await count('charge', 'succeeded'), 2);
  assert.equal(await count('charge', 'declined'), 1);

  proc.child.kill('SIGTERM');
  assert.deepEqual(await proc.waitForExit(10_000), { code: 0, signal: null });
  assert.ok(proc.logs.some((l) => l.msg === 'stopped'));
});

test('when -payments-url carries user and password, then every call sends them as HTTP Basic authorization', async (t) => {
  const seen: (string | undefined)[] = [];
  const provider = createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    res.writeHead(402, { 'content-type': 'application/json' }).end('{"error": {"code": "card_declined"}}');
  });
  await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
  t.after(() => provider.close());
  const { port } = provider.address() as AddressInfo;
  const { client } = clientFor(t, `http://payuser:PAY%40SECRET@127.0.0.1:${port}`);
  await client.charge(chargeOf()).catch(() => undefined);
  await client.refund({ charge: 'ch_1', amount: 1, idempotencyKey: newKey('refund') }).catch(() => undefined);
  const expected = `Basic ${Buffer.from('payuser:PAY@SECRET').toString('base64')}`;
  assert.deepEqual(seen, [expected, expected]);
});

test('when `greenlight payments` is given no subcommand or a bad rate, then it exits 1 saying how to call it', async (t) => {
  const bare = await run(t, ['payments']);
  assert.equal(bare.code, 1);
  assert.match(bare.stderr, /usage: greenlight payments stand-in/);
  const badRate = await run(t, ['payments', 'stand-in', '-lost-rate', '2']);
  assert.equal(badRate.code, 1);
  assert.match(badRate.stderr, /invalid -lost-rate \(GREENLIGHT_LOST_RATE\): must be between 0 and 1/);
});

test('when the stand-in process answers every call 500 (-error-rate 1), then the client tries 3 times with one key, gives up with PaymentUnavailableError, and nothing is charged', async (t) => {
  const proc = greenlight(t, ['payments', 'stand-in', '-addr', '127.0.0.1:0', '-error-rate', '1']);
  const url = String((await proc.waitForLog('payments stand-in started', 30_000)).url);
  const { client, count } = clientFor(t, url);
  const request = chargeOf();

  await assert.rejects(client.charge(request), PaymentUnavailableError);
  const calls = await loggedCalls(proc, 3);
  assert.deepEqual(
    calls.map((l) => [l.idempotency_key, l.status]),
    [
      [request.idempotencyKey, 500],
      [request.idempotencyKey, 500],
      [request.idempotencyKey, 500],
    ],
  );
  assert.deepEqual(await ledger(url), []);
  assert.equal(await count('charge', 'retried'), 2);
  assert.equal(await count('charge', 'unavailable'), 1);
});

test('when the stand-in process loses every answer (-lost-rate 1), then the first attempt charges, the retries with its key replay it, and the ledger holds one charge', async (t) => {
  const proc = greenlight(t, ['payments', 'stand-in', '-addr', '127.0.0.1:0', '-lost-rate', '1']);
  const url = String((await proc.waitForLog('payments stand-in started', 30_000)).url);
  const { client } = clientFor(t, url);
  const request = chargeOf();

  await assert.rejects(client.charge(request), PaymentUnavailableError);
  assert.deepEqual(
    (await loggedCalls(proc, 3)).map((l) => [l.idempotency_key, l.status, l.replayed]),
    [
      [request.idempotencyKey, 201, false],
      [request.idempotencyKey, 201, true],
      [request.idempotencyKey, 201, true],
    ],
  );
  assert.deepEqual(
    (await ledger(url)).map((c) => [c.idempotency_key, c.status]),
    [[request.idempotencyKey, 'succeeded']],
  );
});

test('when a charge is declined, then the decline is final: exactly one call, never retried', async (t) => {
  const standIn = await standInFor(t, { declineRate: 1 });
  const { client, count } = clientFor(t, standIn.url);
  const request = chargeOf({ source: 'tok_anything' });

  assert.deepEqual(await client.charge(request), { status: 'declined', code: 'card_declined' });
  assert.deepEqual(keysOf(standIn), [request.idempotencyKey]);
  assert.equal(await count('charge', 'retried'), 0);
  // tok_visa is not subject to the decline rate.
  assert.equal((await client.charge(chargeOf())).status, 'succeeded');
});

test('when the provider answers 5xx twice, then the client retries with the same key and the third attempt charges once', async (t) => {
  const standIn = await standInFor(t);
  const { client, count } = clientFor(t, standIn.url);
  const request = chargeOf();
  standIn.failNext('error', 'error');

  const outcome = await client.charge(request);
  assert.equal(outcome.status, 'succeeded');
  assert.deepEqual(keysOf(standIn), Array(3).fill(request.idempotencyKey));
  assert.deepEqual(
    standIn.charges().map((c) => c.id),
    [outcome.status === 'succeeded' ? outcome.id : ''],
  );
  assert.equal(await count('charge', 'retried'), 2);
  assert.equal(await count('charge', 'succeeded'), 1);
});

test('when the answer to an applied charge is lost, then the retry with the same key gets the same charge back and the ledger holds one', async (t) => {
  const standIn = await standInFor(t);
  const { client } = clientFor(t, standIn.url);
  const request = chargeOf();
  standIn.failNext('lost');

  const outcome = await client.charge(request);
  assert.equal(standIn.calls.length, 2);
  assert.equal(standIn.charges().length, 1);
  assert.deepEqual(outcome, { status: 'succeeded', id: standIn.charges()[0]?.id, amount: 1_500 });
});

test('when every answer is slower than the timeout, then each attempt is cut, the call ends PaymentUnavailableError, and a later call with the same key gets the charge the first attempt made', async (t) => {
  const standIn = await standInFor(t, { latencyMs: 1_000 });
  const { client, count } = clientFor(t, standIn.url, { timeoutMs: 100 });
  const request = chargeOf();

  await assert.rejects(client.charge(request), (err: Error) => {
    assert.ok(err instanceof PaymentUnavailableError);
    assert.match(err.message, /no answer within 100 ms/);
    return true;
  });
  assert.deepEqual(keysOf(standIn), Array(3).fill(request.idempotencyKey));
  // The provider applied the first attempt: the outcome really was unknown, not "failed".
  assert.equal(standIn.charges().length, 1);
  assert.equal(await count('charge', 'unavailable'), 1);

  standIn.behaviour.latencyMs = 0;
  assert.deepEqual(await client.charge(request), {
    status: 'succeeded',
    id: standIn.charges()[0]?.id,
    amount: 1_500,
  });
  assert.equal(standIn.charges().length, 1);
});

test('when attempts keep failing, then the circuit opens and later calls fail fast without reaching the provider, until a probe after the pause succeeds', async (t) => {
  const standIn = await standInFor(t, { errorRate: 1 });
  const { client, registry } = clientFor(t, standIn.url, { breakerThreshold: 3, halfOpenAfterMs: 300 });

  await assert.rejects(client.charge(chargeOf()), PaymentUnavailableError);
  assert.equal(standIn.calls.length, 3);
  await assert.rejects(client.charge(chargeOf()), (err: Error) => {
    assert.ok(err instanceof PaymentUnavailableError);
    assert.ok(err.cause instanceof BrokenCircuitError);
    assert.match(err.message, /circuit is open/);
    return true;
  });
  assert.equal(standIn.calls.length, 3, 'an open circuit sends nothing');
  assert.match(await registry.metrics(), /greenlight_payment_breaker_transitions_total\{state="open"\} 1/);
  assert.match(await registry.metrics(), /^greenlight_payment_breaker_state 1$/m);

  standIn.behaviour.errorRate = 0;
  await sleep(400);
  assert.equal((await client.charge(chargeOf())).status, 'succeeded');
  assert.match(await registry.metrics(), /greenlight_payment_breaker_transitions_total\{state="closed"\} 1/);
  assert.match(await registry.metrics(), /^greenlight_payment_breaker_state 0$/m);
});

test('when a refund is repeated with its key, then it is refunded once; a refund over what is left, of an unknown charge, or of a declined one is refused', async (t) => {
  const standIn = await standInFor(t);
  const { client, count } = clientFor(t, standIn.url);
  const charged = await client.charge(chargeOf({ amount: 2_000 }));
  assert.equal(charged.status, 'succeeded');
  const charge = charged.status === 'succeeded' ? charged.id : '';
  const refund = { charge, amount: 1_200, idempotencyKey: newKey('refund') };

  standIn.failNext('lost');
  const first = await client.refund(refund);
  assert.match(first.id, /^re_/);
  assert.deepEqual(await client.refund(refund), first);
  assert.deepEqual(
    standIn.refunds().map((r) => [r.id, r.charge, r.amount]),
    [[first.id, charge, 1_200]],
  );
  assert.equal(standIn.charges()[0]?.refunded, 1_200);

  const refused = (status: number, code: string) => (err: Error) => {
    assert.ok(err instanceof PaymentProviderError, String(err));
    assert.equal(err.status, status);
    assert.match(err.answer, new RegExp(code));
    return true;
  };
  const calls = standIn.calls.length;
  await assert.rejects(
    client.refund({ charge, amount: 801, idempotencyKey: newKey() }),
    refused(400, 'amount_too_large'),
  );
  await assert.rejects(
    client.refund({ charge: 'ch_unknown', amount: 1, idempotencyKey: newKey() }),
    refused(404, 'resource_missing'),
  );
  await client.charge(chargeOf({ source: 'tok_declined' }));
  const declined = standIn.charges()[1]?.id as string;
  await assert.rejects(
    client.refund({ charge: declined, amount: 1, idempotencyKey: newKey() }),
    refused(400, 'charge_not_succeeded'),
  );
  assert.equal(
    standIn.calls.length,
    calls + 4,
    'a refusal is not retried (the 4th call is the declined charge)',
  );
  assert.equal(await count('refund', 'error'), 3);
  assert.equal((await client.refund({ charge, amount: 800, idempotencyKey: newKey() })).amount, 800);
});

test('when a key is reused with another body, then the provider answers 422 and the client reports it without retrying', async (t) => {
  const standIn = await standInFor(t);
  const { client } = clientFor(t, standIn.url);
  const request = chargeOf();
  await client.charge(request);

  await assert.rejects(client.charge({ ...request, amount: 1_501 }), (err: Error) => {
    assert.ok(err instanceof PaymentProviderError);
    assert.equal(err.status, 422);
    assert.match(err.message, /422.*idempotency_key_reused/);
    return true;
  });
  assert.equal(standIn.calls.length, 2);
  assert.equal(standIn.charges().length, 1);
});

test('when a call comes without an Idempotency-Key, with a body that is not the contract, or to an unknown path, then the stand-in refuses it and applies nothing', async (t) => {
  const standIn = await standInFor(t);
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${standIn.url}${path}`, { method: 'POST', headers, body });
  const body = (fields: Record<string, unknown> = {}) =>
    JSON.stringify({ amount: 100, currency: 'usd', reference: 'r', source: 'tok_visa', ...fields });
  const key = { 'idempotency-key': newKey() };

  const cases: Array<[Response, number, string]> = [
    [await post('/v1/charges', body()), 400, 'idempotency_key_required'],
    [
      await post('/v1/charges', body(), { 'idempotency-key': 'k'.repeat(256) }),
      400,
      'idempotency_key_required',
    ],
    [await post('/v1/charges', '{', key), 400, 'invalid_json'],
    [await post('/v1/charges', body({ amount: 1.5 }), key), 400, 'amount'],
    [await post('/v1/charges', body({ currency: 'eur' }), key), 400, 'currency'],
    [await post('/v1/charges', body({ x: 1 }), key), 400, 'unknown field: x'],
    [await post('/v1/charges', 'x'.repeat(70_000), key), 413, 'body_too_large'],
    [await post('/v1/payouts', body(), key), 404, 'not_found'],
    [await fetch(`${standIn.url}/v1/charges`, { method: 'DELETE' }), 405, 'method_not_allowed'],
  ];
  for (const [res, status, text] of cases) {
    assert.equal(res.status, status);
    assert.match(await res.text(), new RegExp(text));
  }
  assert.equal(standIn.charges().length, 0);
  // A refused body is not kept under its key: the corrected request with that key is applied.
  assert.equal((await post('/v1/charges', body(), key)).status, 201);
  // A source that is not a token is a decline, final like any other.
  const res = await post('/v1/charges', body({ source: 'card' }), { 'idempotency-key': newKey() });
  assert.deepEqual([res.status, await res.json()], [402, { error: { code: 'invalid_source' } }]);
});

test('when the provider answers what the contract does not allow, then the client fails with what it answered, once, without retrying', async (t) => {
  const answers = [
    [201, 'not json'],
    [201, '{"id":"re_1","status":"succeeded","amount":1}'],
    [200, '{"id":"ch_1","status":"succeeded","amount":1}'],
    [201, `{"id":"ch_1","status":"succeeded","amount":1,"padding":"${'x'.repeat(70_000)}"}`],
    [402, 'no json either'],
  ] as const;
  let requests = 0;
  const server = createServer((_req, res) => {
    const [status, body] = answers[requests++] ?? [500, ''];
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const { client } = clientFor(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);

  for (const [status, body] of answers.slice(0, 4)) {
    await assert.rejects(client.charge(chargeOf()), (err: Error) => {
      assert.ok(err instanceof PaymentProviderError, String(err));
      assert.equal(err.status, status);
      assert.equal(err.answer, body.length > 65_536 ? '(an answer over 65536 bytes)' : body);
      return true;
    });
  }
  // A 402 is a decline whatever its body: the provider took nothing.
  assert.deepEqual(await client.charge(chargeOf()), { status: 'declined', code: 'unknown' });
  assert.equal(requests, 5);
});

test('when the caller aborts, or the client is closed, then a call ends at once: the caller gets its abort, a closed client PaymentUnavailableError', async (t) => {
  const standIn = await standInFor(t, { latencyMs: 5_000 });
  const { client } = clientFor(t, standIn.url, { timeoutMs: 10_000 });

  const caller = new AbortController();
  const aborted = assert.rejects(client.charge(chargeOf(), caller.signal), { name: 'AbortError' });
  await waitFor('the call to reach the provider', () => standIn.calls.length === 1);
  caller.abort();
  await aborted;
  await sleep(100);
  assert.equal(standIn.calls.length, 1, 'an abort is not retried');

  const pending = assert.rejects(client.charge(chargeOf()), PaymentUnavailableError);
  await waitFor('the call to reach the provider', () => standIn.calls.length === 2);
  await client.close();
  await pending;
  await assert.rejects(client.charge(chargeOf()), /client is closed/);
});

test('when many calls with one key race, some answers lost, then every caller gets the one charge', async (t) => {
  const standIn = await standInFor(t, { latencyMs: 5 });
  const { client } = clientFor(t, standIn.url, { attempts: 6, breakerThreshold: 1_000 });
  const request = chargeOf();
  standIn.failNext('lost', 'error', 'lost', 'lost', 'error');

  const outcomes = await Promise.all(Array.from({ length: 10 }, () => client.charge(request)));
  assert.equal(standIn.charges().length, 1);
  for (const outcome of outcomes) assert.deepEqual(outcome, outcomes[0]);
});

test('property: whatever faults meet a sequence of calls and their later retries, a key never charges twice, and a call that succeeded names the charge the ledger holds', async (t) => {
  const standIn = await standInFor(t);
  const { client } = clientFor(t, standIn.url, {
    attempts: 3,
    retryInitialDelayMs: 1,
    retryMaxDelayMs: 2,
    breakerThreshold: 1_000,
  });
  const fault = fc.constantFrom('error' as const, 'lost' as const, undefined);
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({ faults: fc.array(fault, { maxLength: 5 }), amount: fc.integer({ min: 1, max: 10_000 }) }),
        {
          minLength: 1,
          maxLength: 4,
        },
      ),
      async (orders) => {
        for (const order of orders) {
          const request = chargeOf({ amount: order.amount });
          for (const f of order.faults) standIn.failNext(...(f ? [f] : []));
          // As the workflow does: on an unknown outcome, try again later with the same key.
          let outcome = await client.charge(request).catch((err: Error) => err);
          while (outcome instanceof PaymentUnavailableError)
            outcome = await client.charge(request).catch((err: Error) => err);
          const charges = standIn.charges().filter((c) => c.idempotency_key === request.idempotencyKey);
          assert.equal(charges.length, 1);
          assert.deepEqual(outcome, { status: 'succeeded', id: charges[0]?.id, amount: order.amount });
        }
      },
    ),
    { numRuns: 40 },
  );
});

test('when -payments-url or a stand-in rate is not valid, then the configuration is refused; without -addr the stand-in listens where -payments-url points', () => {
  const config = (argv: string[]) => buildConfig(readSettings(argv, {}));
  assert.throws(() => config(['-payments-url', 'ftp://pay.example']), ConfigError);
  assert.throws(() => config(['-payments-timeout', '0']), ConfigError);
  assert.throws(() => config(['-error-rate', '1.5']), ConfigError);
  assert.throws(() => config(['-addr', 'nowhere']), ConfigError);
  const payments = config(['-payments-url', 'http://localhost:9123/']).payments;
  assert.equal(payments.url, 'http://localhost:9123');
  assert.equal(payments.timeoutMs, 5_000);
  assert.deepEqual([payments.standIn.host, payments.standIn.port], ['127.0.0.1', 9123]);
  assert.deepEqual(
    [config(['-addr', ':9555']).payments.standIn.host, config(['-addr', ':9555']).payments.standIn.port],
    ['0.0.0.0', 9555],
  );
});
