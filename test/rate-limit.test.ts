import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTestApp, createTestDatabase, createUser } from './helpers.ts';

const dsn = await createTestDatabase();
const limited = await buildTestApp({
  dsn,
  flags: ['-limiter-enabled=true', '-limiter-rps', '2', '-limiter-burst', '4'],
});
const behindProxy = await buildTestApp({
  dsn,
  flags: [
    '-limiter-enabled=true',
    '-limiter-rps',
    '2',
    '-limiter-burst',
    '4',
    '-trusted-proxies',
    '10.0.0.1',
  ],
});

function hit(app = limited.app, remoteAddress = '192.0.2.10', headers: Record<string, string> = {}) {
  return app.inject({ url: '/v1/healthcheck', remoteAddress, headers });
}

describe('rate limiting', () => {
  test('when a client uses its burst, then 429 with Retry-After, and after a refill it may go on', async () => {
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await hit()).statusCode);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
    const limitedRes = await hit();
    assert.equal(limitedRes.statusCode, 429);
    assert.deepEqual(limitedRes.json(), { error: 'rate limit exceeded' });
    assert.equal(limitedRes.headers['retry-after'], '1');
    assert.equal(limitedRes.headers['ratelimit-limit'], '4');
    assert.equal(limitedRes.headers['ratelimit-remaining'], '0');
    assert.equal(limitedRes.headers['ratelimit-reset'], '1');
    await sleep(550); // 2 rps: one token after 500 ms
    assert.equal((await hit()).statusCode, 200);
    assert.equal((await hit()).statusCode, 429);
  });

  test('when another IP asks, then it has its own bucket', async () => {
    for (let i = 0; i < 4; i++) await hit(limited.app, '192.0.2.20');
    assert.equal((await hit(limited.app, '192.0.2.20')).statusCode, 429);
    assert.equal((await hit(limited.app, '192.0.2.21')).statusCode, 200);
  });

  test('when an untrusted peer forges X-Forwarded-For, then its own bucket still counts', async () => {
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      statuses.push(
        (await hit(limited.app, '192.0.2.30', { 'x-forwarded-for': `203.0.113.${i}` })).statusCode,
      );
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
  });

  test('when a trusted proxy forwards, then each forwarded client has its own bucket', async () => {
    for (let i = 0; i < 4; i++) {
      await hit(behindProxy.app, '10.0.0.1', { 'x-forwarded-for': '198.51.100.7' });
    }
    assert.equal(
      (await hit(behindProxy.app, '10.0.0.1', { 'x-forwarded-for': '198.51.100.7' })).statusCode,
      429,
    );
    assert.equal(
      (await hit(behindProxy.app, '10.0.0.1', { 'x-forwarded-for': '198.51.100.8' })).statusCode,
      200,
    );
    // A client forging the header through the proxy cannot pick someone else's bucket:
    // the proxy appends the real address last, and that is the one believed.
    assert.equal(
      (await hit(behindProxy.app, '10.0.0.1', { 'x-forwarded-for': '198.51.100.8, 198.51.100.7' }))
        .statusCode,
      429,
    );
  });

  test('when the limiter is off, then nothing is limited', async () => {
    const { app } = await buildTestApp({ dsn });
    for (let i = 0; i < 20; i++) assert.equal((await hit(app)).statusCode, 200);
  });
});

describe('rate limiting per user', () => {
  test('when two users share one IP, then each has their own bucket', async () => {
    const perUser = await buildTestApp({ dsn, flags: ['-limiter-enabled=true', '-limiter-burst', '2'] });
    const alice = await createUser(perUser.db, { permissions: ['movies:read'] });
    const bob = await createUser(perUser.db, { permissions: ['movies:read'] });
    const as = (token: string) => hit(perUser.app, '192.0.2.50', { authorization: `Bearer ${token}` });
    assert.deepEqual([(await as(alice.token)).statusCode, (await as(alice.token)).statusCode], [200, 200]);
    assert.equal((await as(alice.token)).statusCode, 429);
    assert.equal((await as(bob.token)).statusCode, 200);
    assert.equal(
      (await hit(perUser.app, '192.0.2.50')).statusCode,
      200,
      'anonymous requests use the IP bucket',
    );
  });

  test('when one address uses ten accounts, then together they get no more than the address ceiling', async () => {
    // rps 0.01: nothing refills during the test; burst 2 per user, ceiling 2 × 2 = 4.
    const ceiling = await buildTestApp({
      dsn,
      flags: [
        '-limiter-enabled=true',
        '-limiter-rps',
        '0.01',
        '-limiter-burst',
        '2',
        '-limiter-address-ceiling',
        '2',
      ],
    });
    const accounts = [];
    for (let i = 0; i < 10; i++) accounts.push(await createUser(ceiling.db, { activated: false }));
    let answered = 0;
    for (const account of accounts) {
      for (let i = 0; i < 2; i++) {
        const res = await hit(ceiling.app, '192.0.2.55', { authorization: `Bearer ${account.token}` });
        if (res.statusCode === 200) answered++;
        else assert.equal(res.statusCode, 429);
      }
    }
    assert.equal(answered, 4, 'ten accounts × burst 2 would be 20');
    assert.equal((await hit(ceiling.app, '192.0.2.55')).statusCode, 429, 'anonymous requests count too');
    assert.equal(
      (await hit(ceiling.app, '192.0.2.56', { authorization: `Bearer ${accounts[9]?.token}` })).statusCode,
      200,
      'the ceiling is per address',
    );
  });

  test('when -limiter-per-user=false, then users behind one IP share its bucket', async () => {
    const perIp = await buildTestApp({
      dsn,
      flags: ['-limiter-enabled=true', '-limiter-burst', '2', '-limiter-per-user=false'],
    });
    const alice = await createUser(perIp.db);
    const bob = await createUser(perIp.db);
    const as = (token: string) => hit(perIp.app, '192.0.2.60', { authorization: `Bearer ${token}` });
    await as(alice.token);
    await as(alice.token);
    assert.equal((await as(bob.token)).statusCode, 429);
  });
});

describe('rate limiting unknown tokens', () => {
  test('when a client sends made-up tokens, then after its burst it gets 429 before any lookup', async () => {
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      const token = `${'A'.repeat(25)}${String.fromCharCode(65 + i)}`;
      statuses.push((await hit(limited.app, '192.0.2.70', { authorization: `Bearer ${token}` })).statusCode);
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429]);
  });
});
