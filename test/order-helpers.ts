// What the order tests share: a product to buy, made through the products API, and the real
// app with its order workflow running in-process against the payment stand-in.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { createMetrics } from '../src/app.ts';
import { QUEUES } from '../src/background.ts';
import { startOrderWorkers } from '../src/orders/orders.worker.ts';
import { createPaymentsClient } from '../src/payments/payments.ts';
import { startPaymentsStandIn } from '../src/payments/stand-in.ts';
import type { Db } from '../src/platform/db.ts';
import { startJobs } from '../src/platform/jobs.ts';
import { buildTestApp, captureLogger, type Inject, waitFor } from './helpers.ts';

// The statuses of an order the workflow confirms, in order.
export const ORDER_FLOW = ['pending', 'reserved', 'paid', 'confirmed'];

export type ProductJson = { id: number; price: number; stock: number };

// A product of the user `inject` calls as: a lamp at 12.50, 10 in stock, unless told otherwise.
export async function createProduct(
  inject: Inject,
  fields: Record<string, unknown> = {},
): Promise<ProductJson> {
  const res = await inject({
    method: 'POST',
    url: '/api/v1/products',
    payload: { name: 'Lamp', price: 12.5, stock: 10, ...fields },
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json() as ProductJson;
}

// buildTestApp, with the workflow's job workers charging the payment stand-in (its ledger and
// behaviour are the test's), stopped after the file's tests, before the app and its pool close.
// `provider` puts something between the workflow and the stand-in: given the stand-in's URL, it
// answers the URL the payments client calls.
export async function buildWorkflowTestApp(
  options: Parameters<typeof buildTestApp>[0] = {},
  provider: (standInUrl: string) => string = (url) => url,
) {
  // Registered before buildTestApp's own hook, so it runs first.
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const stop of stops) await stop();
  });
  const test = await buildTestApp(options);
  const { db, dsn, config } = test;
  // The workflow's own log, apart from the app's
  const { logger, lines: workflowLines } = captureLogger();
  const standIn = await startPaymentsStandIn({ host: '127.0.0.1', port: 0 });
  const jobs = await startJobs(dsn, logger, QUEUES);
  const metrics = createMetrics(config, db, jobs);
  const payments = createPaymentsClient({ url: provider(standIn.url), timeoutMs: 2000, logger });
  stops.push(
    () => jobs.stop({ graceful: false, wait: true, timeout: 5000 }),
    () => payments.close(),
    () => standIn.close(),
  );
  await startOrderWorkers({ db, jobs, payments, logger, config, metrics });
  return { ...test, standIn, jobs, metrics, logger, workflowLines };
}

// Every order placed has ended (so no workflow step runs on when the file's pool closes).
export function allOrdersEnded(db: Db): Promise<true> {
  return waitFor(
    'every order to end',
    async () => {
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM orders WHERE status IN ('pending', 'reserved', 'paid')",
      );
      return rows[0]?.n === 0;
    },
    20_000,
  );
}
