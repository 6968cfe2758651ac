// A test that would catch a gap in the change streams: 200 writers on their own connections
// hold their change open for a random while before committing (some roll back), several on
// the same records, while SSE readers follow the product stream and reconnect at random points
// with Last-Event-ID. Every reader must get every committed event exactly once, in one order
// that all readers share, each record's changes in their commit order, and nothing of a
// rolled-back change; once with one service, once with two processes readers move between.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PoolClient } from 'pg';
import { createPool, type Db } from '../src/platform/db.ts';
import * as products from '../src/products/products.sql.ts';
import { buildTestApp, createTestDatabase, createUser } from './helpers.ts';
import { startServer } from './processes.ts';
import { openSse, type SseClient, until } from './stream-clients.ts';

const WRITERS = 200;
const CHANGES_PER_WRITER = 3;
const HOT_PRODUCTS = 16;
const READERS = 4;
const MAX_HOLD_MS = 40;

type Delivered = { id: number; type: string; product: { id: number; name: string } };

// A reader that reconnects every now and then, resuming after the last event it got, on one
// of `bases` chosen at random each time.
function follower(bases: readonly string[], token: string) {
  const got: Delivered[] = [];
  const gaps: string[] = [];
  let client: SseClient | undefined;
  let seen = 0;
  let stopped = false;
  const take = () => {
    for (; client && seen < client.events.length; seen++) {
      const event = client.events[seen];
      if (event?.event === 'gap') gaps.push(event.data ?? '');
      else if (event?.data) got.push(JSON.parse(event.data) as Delivered);
    }
  };
  const connect = async () => {
    const base = bases[Math.floor(Math.random() * bases.length)] as string;
    const last = got.at(-1);
    client = await openSse(`${base}/api/v1/products/events`, {
      token,
      headers: { 'last-event-id': String(last?.id ?? 0) },
    });
    assert.equal(client.status, 200);
    seen = 0;
  };
  const running = (async () => {
    await connect();
    for (;;) {
      await sleep(20 + Math.random() * 150);
      if (stopped) return;
      take();
      client?.close();
      // Whatever arrived before the close counts; nothing after it does.
      take();
      await connect();
    }
  })();
  return {
    got,
    gaps,
    // Follows without reconnecting from now on.
    settle: async () => {
      stopped = true;
      await running;
    },
    poll: take,
    close: () => client?.close(),
  };
}

type Committed = { product: number; name: string; type: string; seq: number };

// One writer: a few changes, each in its own transaction held open for a random while; one in
// five rolled back. Each change is the transaction's only statement, as in the service.
async function writer(
  client: PoolClient,
  index: number,
  userId: number,
  hot: readonly number[],
  committed: Committed[],
  rolledBack: string[],
  order: { next: number },
) {
  try {
    for (let k = 0; k < CHANGES_PER_WRITER; k++) {
      const name = `w${index}-${k}`;
      const rollback = Math.random() < 0.2;
      await client.query('BEGIN');
      let change: Committed;
      if (Math.random() < 0.3) {
        const created = await products.insertProduct(client, userId, {
          name,
          description: '',
          price: '1.00',
          stock: 1,
        });
        change = { product: created.id, name, type: 'product.created', seq: order.next++ };
      } else {
        const id = hot[Math.floor(Math.random() * hot.length)] as number;
        const updated = await products.updateProduct(client, String(id), { userId, admin: true }, { name });
        assert.ok(updated);
        // The statement returns once the change it waited for (same product) has committed,
        // so `seq` follows each product's commit order.
        change = { product: id, name, type: 'product.updated', seq: order.next++ };
      }
      await sleep(Math.random() * MAX_HOLD_MS);
      if (rollback) {
        await client.query('ROLLBACK');
        rolledBack.push(name);
      } else {
        await client.query('COMMIT');
        committed.push(change);
        // The service's wake-up, after the commit.
        await client.query(`SELECT pg_notify('${products.PRODUCT_EVENTS_CHANNEL}', '')`);
      }
    }
  } finally {
    client.release();
  }
}

async function runScenario(t: TestContext, dsn: string, db: Db, bases: readonly string[]) {
  // One connection per writer, all opened before anything is measured.
  const pool = createPool({ dsn, maxOpenConns: WRITERS, maxIdleTimeMs: 60_000, queryTimeoutMs: 60_000 });
  t.after(() => pool.end());
  const connections: PoolClient[] = [];
  while (connections.length < WRITERS)
    connections.push(...(await Promise.all(Array.from({ length: 20 }, () => pool.connect()))));
  const owner = await createUser(db);
  const hot: number[] = [];
  for (let i = 0; i < HOT_PRODUCTS; i++) {
    const created = await products.insertProduct(db, owner.id, {
      name: `hot-${i}`,
      description: '',
      price: '1.00',
      stock: 1,
    });
    hot.push(created.id);
  }
  const readers = Array.from({ length: READERS }, () => follower(bases, owner.token));
  t.after(() => {
    for (const reader of readers) reader.close();
  });

  const committed: Committed[] = [];
  const rolledBack: string[] = [];
  const order = { next: 0 };
  await Promise.all(
    connections.map((client, i) => writer(client, i, owner.id, hot, committed, rolledBack, order)),
  );
  await Promise.all(readers.map((reader) => reader.settle()));

  const { rows } = await db.query<{ id: string }>('SELECT id FROM product_events');
  const stored = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  assert.equal(stored.length, HOT_PRODUCTS + committed.length);
  await until(
    () =>
      readers.every((reader) => {
        reader.poll();
        return reader.got.length >= stored.length;
      }),
    'every reader to get every committed event',
    15_000,
  ).catch(() => {});
  const reference = readers[0]?.got.map((e) => e.id) ?? [];
  for (const [i, reader] of readers.entries()) {
    const ids = reader.got.map((e) => e.id);
    assert.deepEqual(reader.gaps, [], `reader ${i} was told of a gap`);
    // Nothing skipped, nothing twice.
    assert.deepEqual(
      [...ids].sort((a, b) => a - b),
      stored,
      `reader ${i}: missing ${stored.filter((id) => !ids.includes(id)).join(', ') || 'none'}`,
    );
    // One order for every reader.
    assert.deepEqual(ids, reference, `reader ${i} got another order than reader 0`);
  }
  const names = new Set(readers[0]?.got.map((e) => e.product.name));
  for (const name of rolledBack) assert.ok(!names.has(name), `the rolled-back ${name} was delivered`);
  // Each product's changes in their commit order.
  for (const id of hot) {
    const expected = committed
      .filter((c) => c.product === id)
      .sort((a, b) => a.seq - b.seq)
      .map((c) => c.name);
    const delivered = (readers[0]?.got ?? [])
      .filter((e) => e.product.id === id && e.type === 'product.updated')
      .map((e) => e.product.name);
    assert.deepEqual(delivered, expected, `product ${id}'s changes out of commit order`);
  }
  assert.ok(rolledBack.length > 0 && committed.length > WRITERS);
}

test('when 200 writers commit after random delays (some roll back, several on one product) while readers reconnect at random, then every reader gets every committed event once, in one shared order, each product in commit order', async (t) => {
  const { app, db, dsn } = await buildTestApp();
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  await runScenario(t, dsn, db, [`http://127.0.0.1:${port}`]);
});

test('when the same runs against two processes and each reconnect picks either, then every reader still gets every committed event once, in one shared order', async (t) => {
  const dsn = await createTestDatabase();
  const [a, b] = await Promise.all([
    startServer(t, ['-db-dsn', dsn], 60_000),
    startServer(t, ['-db-dsn', dsn], 60_000),
  ]);
  const db = createPool({ dsn, maxOpenConns: 4, maxIdleTimeMs: 60_000, queryTimeoutMs: 3_000 });
  t.after(() => db.end());
  await runScenario(t, dsn, db, [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`]);
});
