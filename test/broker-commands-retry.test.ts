// The command consumer's retries, idempotency keys and dead letters against a real
// rabbitmq-server (one for the file), with the orders' workflow running: a failing command
// waits out its backoff outside the command queue (the commands behind it go on), what can
// never succeed is dead-lettered at once, a message id is its sender's user's key as REST's
// Idempotency-Key is, and dead letters carry no credential.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { AsyncMessage } from 'rabbitmq-client';
import type { IncomingCommand } from '../src/broker/broker.ts';
import { tryLockKey } from '../src/orders/idempotency-keys.sql.ts';
import { createPool, type Db, withTransaction } from '../src/platform/db.ts';
import { commandHandlerOf, connect, sendCommands } from './broker-clients.ts';
import { captureLogger, createUser, waitFor, withToken } from './helpers.ts';
import { allOrdersEnded, buildWorkflowTestApp, createProduct } from './order-helpers.ts';
import { startRabbitmqServer } from './rabbitmq-server.ts';

const rabbit = await startRabbitmqServer();
const client = connect(rabbit.url);
const t = await buildWorkflowTestApp({ flags: ['-amqp-url', rabbit.url, '-amqp-relay-poll', '100ms'] });

const seller = await createUser(t.db);
const importer = await createUser(t.db, { permissions: ['movies:read', 'movies:write'] });
const other = await createUser(t.db, { permissions: ['movies:read', 'movies:write'] });
const buyer = await createUser(t.db);
const buyer2 = await createUser(t.db);

const NDJSON = 'application/x-ndjson';
const KEY_REUSED = 'validation: idempotency key reused with a different request';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const row = (title: string) =>
  `${JSON.stringify({ title, year: 2020, runtime: '90 mins', genres: ['drama'] })}\n`;
const importOf = (token: string, messageId: string, title: string) => ({
  messageId,
  type: 'movies.import',
  headers: bearer(token),
  contentType: NDJSON,
  body: row(title),
});
const orderBody = (productId: number, quantity = 1) =>
  JSON.stringify({ items: [{ product_id: productId, quantity }], payment_token: 'tok_visa' });
const orderOf = (token: string, messageId: string, body: string) => ({
  messageId,
  type: 'orders.place',
  headers: bearer(token),
  contentType: 'application/json',
  body,
});

const movieCount = async (title: string) =>
  Number((await t.db.query('SELECT count(*) FROM movies WHERE title = $1', [title])).rows[0].count);
const ordersOf = async (userId: number) =>
  (await t.db.query('SELECT id FROM orders WHERE user_id = $1', [userId])).rows.length;
const product = async (fields: Record<string, unknown> = {}) =>
  (await createProduct(withToken(t.app, seller.token), { stock: 1000, ...fields })).id;
const metricsText = async () => (await t.app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).body;

type Letter = Readonly<{ messageId: string | undefined; headers: Record<string, unknown>; at: number }>;

// Every dead letter from now on, with all its headers.
async function deadLetters(): Promise<{ letters: Letter[]; reasons: () => Record<string, string> }> {
  const letters: Letter[] = [];
  await waitFor('the dead-letter queue', () =>
    client.queueDeclare({ queue: 'greenlight.commands.dead', passive: true }).then(
      () => true,
      () => false,
    ),
  );
  const consumer = client.createConsumer(
    { queue: 'greenlight.commands.dead', queueOptions: { passive: true } },
    (msg: AsyncMessage) => {
      letters.push({ messageId: msg.messageId, headers: msg.headers ?? {}, at: Date.now() });
    },
  );
  consumer.on('error', () => {});
  await new Promise((resolve) => consumer.once('ready', resolve));
  after(() => consumer.close());
  const reasons = () =>
    Object.fromEntries(
      letters.map((l) => [l.messageId ?? '(none)', String(l.headers['x-greenlight-error'])]),
    );
  return { letters, reasons };
}

const dead = await deadLetters();

test('when two commands fail transiently, then the commands behind them are applied at once, and the two once they can be', async () => {
  const productId = await product();
  const keys = ['busy-1', 'busy-2'];
  const titles = ['Behind 1', 'Behind 2', 'Behind 3', 'Behind 4', 'Behind 5'];
  // Both orders' keys held, as by a first delivery still in its transaction: each attempt is
  // the route's 409, which a retry fixes.
  await withTransaction(t.db, async (tx) => {
    for (const key of keys) assert.equal(await tryLockKey(tx, buyer.id, key), true);
    const sent = Date.now();
    await sendCommands(client, [
      ...keys.map((key) => orderOf(buyer.token, key, orderBody(productId))),
      ...titles.map((title, i) => importOf(importer.token, `behind-${i}`, title)),
    ]);
    // Before: the two waited out their backoff in both of the consumer's slots, ~43 s.
    await waitFor(
      'the commands behind the failing ones',
      async () => (await Promise.all(titles.map(movieCount))).every((n) => n === 1),
      15_000,
    );
    assert.ok(Date.now() - sent < 15_000);
    assert.equal(await ordersOf(buyer.id), 0);
    // Their first attempts may come after the imports: waited for, the keys still held.
    await waitFor(
      'the two orders to have been retried',
      async () => {
        const retried = /greenlight_broker_commands_total\{type="orders.place",outcome="retry"\} (\d+)/.exec(
          await metricsText(),
        );
        return Number(retried?.[1] ?? 0) >= 2;
      },
      5000,
    );
  });
  // Released: the next retry of each places its order (the backoff so far is a few seconds).
  await waitFor('both orders placed', async () => (await ordersOf(buyer.id)) === 2, 20_000);
  assert.equal(
    dead.letters.filter((l) => keys.includes(l.messageId ?? '')).length,
    0,
    'no failing command was dead-lettered',
  );
  await allOrdersEnded(t.db);
});

test('when commands can never succeed (a NUL in the message-id, a total past the cap), then they are dead-lettered at once and those behind are applied', async () => {
  const dear = await Promise.all(Array.from({ length: 12 }, () => product({ price: 99_999_999.99 })));
  const overflow = JSON.stringify({
    items: dear.map((id) => ({ product_id: id, quantity: 1000 })),
    payment_token: 'tok_visa',
  });
  const sent = Date.now();
  await sendCommands(client, [
    importOf(importer.token, 'nul\u0000id', 'Nul'),
    orderOf(buyer2.token, 'overflow', overflow),
    importOf(importer.token, 'after-poison', 'After poison'),
  ]);
  await waitFor(
    'both dead letters',
    () => ['nul\u0000id', 'overflow'].every((id) => dead.letters.some((l) => l.messageId === id)),
    15_000,
  );
  await waitFor('the command behind', async () => (await movieCount('After poison')) === 1, 15_000);
  assert.ok(Date.now() - sent < 15_000);
  const reasons = dead.reasons();
  assert.equal(
    reasons['nul\u0000id'],
    'message-id must be 1-255 visible ASCII characters: it is the idempotency key',
  );
  assert.equal(reasons.overflow, 'validation: the order total must not be more than 999999999999.99');
  assert.equal(await movieCount('Nul'), 0);
  assert.equal(await ordersOf(buyer2.id), 0);
});

const command = (fields: Partial<IncomingCommand>): IncomingCommand => ({
  messageId: 'handler',
  type: 'movies.import',
  contentType: NDJSON,
  headers: bearer(importer.token),
  body: Buffer.from(row('Handler')),
  redelivered: false,
  attempts: 0,
  ...fields,
});

test('when the database refuses the data itself (SQLSTATE class 22 or 23), then the command is dead-lettered, not retried', async () => {
  const { logger } = captureLogger();
  const refusing = {
    query: async () => {
      throw Object.assign(new Error('numeric field overflow'), { code: '22003', severity: 'ERROR' });
    },
  } as unknown as Db;
  const handle = commandHandlerOf(t, logger, refusing);
  assert.deepEqual(await handle(command({ messageId: 'refused' })), {
    kind: 'dead',
    reason: 'the database refused the command (SQLSTATE 22003): numeric field overflow',
  });
});

test('when a command fails transiently, then it is retried after the backoff of its attempt, and dead-lettered at the tenth', async () => {
  const { logger } = captureLogger();
  const nowhere = createPool({ ...t.config.db, dsn: 'postgres://greenlight@127.0.0.1:1/greenlight' });
  const handle = commandHandlerOf(t, logger, nowhere);
  try {
    const started = Date.now();
    assert.deepEqual(await handle(command({ attempts: 0 })), { kind: 'retry', attempt: 1, delayMs: 200 });
    assert.deepEqual(await handle(command({ attempts: 3 })), { kind: 'retry', attempt: 4, delayMs: 1600 });
    assert.deepEqual(await handle(command({ attempts: 8 })), { kind: 'retry', attempt: 9, delayMs: 10_000 });
    // The handler never waits: the broker holds the command for the delay.
    assert.ok(Date.now() - started < 5000);
    const last = await handle(command({ attempts: 9 }));
    assert.equal(last.kind, 'dead');
    assert.match(last.kind === 'dead' ? last.reason : '', /^gave up after 10 attempts: /);
  } finally {
    await nowhere.end();
  }
});

test('when two users send the same message-id, then both commands are applied; the same user again is a duplicate, or dead-lettered with another body', async () => {
  const productId = await product();
  await sendCommands(client, [
    importOf(importer.token, 'shared-import', 'Shared by one'),
    importOf(other.token, 'shared-import', 'Shared by other'),
    orderOf(buyer.token, 'shared-order', orderBody(productId)),
    orderOf(buyer2.token, 'shared-order', orderBody(productId)),
  ]);
  await waitFor(
    'both imports and both orders',
    async () =>
      (await movieCount('Shared by one')) === 1 &&
      (await movieCount('Shared by other')) === 1 &&
      (await ordersOf(buyer2.id)) === 1,
  );
  const orders = await ordersOf(buyer.id);
  await sendCommands(client, [
    importOf(importer.token, 'shared-import', 'Shared by one'),
    importOf(importer.token, 'shared-import', 'Shared, another body'),
    orderOf(buyer.token, 'shared-order', orderBody(productId)),
    orderOf(buyer.token, 'shared-order', orderBody(productId, 3)),
  ]);
  await waitFor('two dead letters', () =>
    ['shared-import', 'shared-order'].every((id) => dead.letters.some((l) => l.messageId === id)),
  );
  await waitFor('the resends acknowledged as duplicates', async () => {
    const text = await metricsText();
    return (
      /greenlight_broker_commands_total\{type="movies.import",outcome="duplicate"\} 1\b/.test(text) &&
      /greenlight_broker_commands_total\{type="orders.place",outcome="duplicate"\} 1\b/.test(text)
    );
  });
  const reasons = dead.reasons();
  assert.equal(reasons['shared-import'], KEY_REUSED);
  assert.equal(reasons['shared-order'], KEY_REUSED);
  assert.equal(await movieCount('Shared by one'), 1);
  assert.equal(await movieCount('Shared, another body'), 0);
  assert.equal(await ordersOf(buyer.id), orders);
  const { rows } = await t.db.query(
    'SELECT user_id FROM broker_commands WHERE message_id = $1 ORDER BY user_id',
    ['shared-import'],
  );
  assert.deepEqual(
    rows.map((r) => Number(r.user_id)),
    [importer.id, other.id].sort((a, b) => a - b),
  );
  await allOrdersEnded(t.db);
});

test('when a command is dead-lettered, then its letter keeps its headers but its credentials', async () => {
  await sendCommands(client, [
    {
      messageId: 'with-credentials',
      type: 'movies.explode',
      headers: { ...bearer(importer.token), 'X-Api-Key': 'a-live-key', 'x-request-note': 'kept' },
      contentType: NDJSON,
      body: row('Explode'),
    },
  ]);
  const letter = await waitFor('the dead letter', () =>
    dead.letters.find((l) => l.messageId === 'with-credentials'),
  );
  assert.match(String(letter.headers['x-greenlight-error']), /unknown command type "movies.explode"/);
  assert.equal(letter.headers['x-request-note'], 'kept');
  assert.equal(letter.headers.authorization, undefined);
  assert.equal(letter.headers['X-Api-Key'], undefined);
});

test('when a command names its media type in another case, then it is the same media type', async () => {
  await sendCommands(client, [
    { ...importOf(importer.token, 'upper-ndjson', 'Upper NDJSON'), contentType: 'Application/X-NDJSON' },
    {
      ...importOf(importer.token, 'upper-csv', ''),
      contentType: 'TEXT/CSV; charset=UTF-8',
      body: 'title,year,runtime,genres\r\nUpper CSV,2020,90 mins,drama\r\n',
    },
  ]);
  await waitFor(
    'both imports',
    async () => (await movieCount('Upper NDJSON')) === 1 && (await movieCount('Upper CSV')) === 1,
  );
  assert.equal(
    dead.letters.filter((l) => l.messageId === 'upper-ndjson' || l.messageId === 'upper-csv').length,
    0,
  );
});
