// The order workflow, a saga on durable jobs (docs/orders.md): reserve stock, charge the
// payment provider, confirm; or compensate (refund if charged, release stock) when the charge
// is declined, a cancel is asked for, or the order times out. The order row is the step log:
// each step commits its state change, its stock change and the enqueue of the next step in one
// transaction, so a crash resumes from the last committed step. Every step is idempotent: a
// step whose order has moved on is a no-op, state changes are conditional on the expected
// status, and the provider is always called with the order's own idempotency keys, so a step
// re-run after a crash never charges twice.
import {
  type ChargeOutcome,
  PaymentProviderError,
  type PaymentsClient,
  PaymentUnavailableError,
} from '../payments/payments.ts';
import { type Db, withTransaction } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import { inSpan } from '../platform/tracing.ts';
import { releaseStock, reserveStock, type StockLine, type StockShortage } from '../products/products.ts';
import { cents, type Order, type OrderStatus } from './order.ts';
import { ordersChanged } from './order-events.ts';
import type { OrderMetrics } from './orders.metrics.ts';
import * as orders from './orders.sql.ts';
import { enqueueStep, STEP_EXPIRE_SECONDS, STEP_FROM, type Step, type StepJob } from './workflow.queue.ts';

export type WorkflowDeps = Readonly<{ db: Db; jobs: Jobs; payments: PaymentsClient; metrics?: OrderMetrics }>;

// A provider call ends (or is abandoned, to be retried with the same key) before its job
// would be taken for dead.
const CALL_DEADLINE_MS = (STEP_EXPIRE_SECONDS - 2) * 1000;

export type StepOutcome = 'done' | 'moved_on';

// A test switch (docs/orders.md): GREENLIGHT_FAULT_KILL_AFTER=reserved makes the process
// SIGKILL itself right after that point is passed, to prove a crash there loses nothing. Unset
// (always, outside the crash test) it does nothing.
function faultPoint(point: string): void {
  const points = process.env.GREENLIGHT_FAULT_KILL_AFTER;
  if (points?.split(',').includes(point)) process.kill(process.pid, 'SIGKILL');
}

const linesOf = (order: Order): StockLine[] =>
  order.items.map((item) => ({ productId: item.productId, quantity: item.quantity }));

class StockShortageError extends Error {
  readonly shortage: StockShortage;
  constructor(shortage: StockShortage) {
    super('stock shortage');
    this.shortage = shortage;
  }
}

// Runs one step of one order. Each pass either moves the order or finds it moved: a forward
// change refused because a cancel was asked meanwhile is followed by the compensation.
export async function runStep(deps: WorkflowDeps, job: StepJob): Promise<StepOutcome> {
  return inSpan(
    `order ${job.step}`,
    { kind: 'INTERNAL', attributes: { 'order.id': job.orderId, 'order.step': job.step } },
    async () => {
      for (let pass = 0; pass < 3; pass++) {
        const order = await orders.selectOrder(deps.db, job.orderId);
        if (!order || order.status !== STEP_FROM[job.step]) return 'moved_on';
        const moved =
          order.cancelReason !== null ? await compensate(deps, order) : await FORWARD[job.step](deps, order);
        if (moved) return 'done';
      }
      return 'moved_on';
    },
  );
}

// After the transition committed: counted, and the change streams woken (not awaited: a lost
// wake-up is covered by their safety poll).
function entered(deps: WorkflowDeps, status: OrderStatus): void {
  deps.metrics?.transitions.inc({ status });
  void ordersChanged(deps.db);
  faultPoint(status);
}

const FORWARD: Readonly<Record<Step, (deps: WorkflowDeps, order: Order) => Promise<boolean>>> = {
  reserve,
  charge,
  confirm,
};

async function reserve(deps: WorkflowDeps, order: Order): Promise<boolean> {
  try {
    const moved = await withTransaction(deps.db, async (client) => {
      const reserved = await orders.transition(client, order.id, 'pending', 'reserved', {
        detail: 'stock reserved',
        forward: true,
      });
      if (!reserved) return false;
      const shortage = await reserveStock(client, linesOf(order));
      if (shortage) throw new StockShortageError(shortage);
      await enqueueStep(deps.jobs, client, { orderId: order.id, step: 'charge' });
      return true;
    });
    if (moved) entered(deps, 'reserved');
    return moved;
  } catch (err) {
    if (!(err instanceof StockShortageError)) throw err;
    const { productId, missing } = err.shortage;
    const reason = missing
      ? `product ${productId} does not exist`
      : `insufficient stock for product ${productId}`;
    const rejected = await orders.transition(deps.db, order.id, 'pending', 'rejected', {
      detail: reason,
      failureReason: reason,
      forward: true,
    });
    if (rejected) entered(deps, 'rejected');
    return rejected !== undefined;
  }
}

// The order's one charge. A 400 refuses the request itself (say, an amount over the provider's
// limit): nothing was charged and the same request would be refused again, so it ends the
// order like a decline. Any other answer outside the contract may hide a charge (a 201 that is
// not a succeeded charge, such as a "pending" one; a 422 for the key reused with another
// body) or a misconfiguration (a 401): it fails the step, which is retried with the same key
// and logged each time, and never ends the order as if nothing had been taken.
async function chargeOf(deps: WorkflowDeps, order: Order): Promise<ChargeOutcome> {
  try {
    return await deps.payments.charge(
      {
        amount: cents(order.total),
        currency: 'usd',
        reference: order.paymentReference,
        source: order.paymentToken,
        idempotencyKey: `${order.paymentReference}-charge`,
      },
      AbortSignal.timeout(CALL_DEADLINE_MS),
    );
  } catch (err) {
    if (err instanceof PaymentProviderError && err.status === 400)
      return { status: 'declined', code: 'refused_400' };
    throw err;
  }
}

async function charge(deps: WorkflowDeps, order: Order): Promise<boolean> {
  // An order of free products has nothing to charge (and the provider refuses an amount of 0).
  if (cents(order.total) === 0) return paid(deps, order, { detail: 'nothing to charge' });
  // Committed first: from here on a charge may exist whatever happens to this process.
  const attempt = await orders.markChargeAttempted(deps.db, order.id);
  if (!attempt) return false;
  // A failure (the provider unreachable, its outcome unknown) fails the job, which is retried
  // with backoff; the retry sends the same key.
  let outcome: ChargeOutcome;
  try {
    outcome = await chargeOf(deps, order);
  } catch (err) {
    // Nothing left this process and no earlier attempt may have: a cancel now charges nothing
    // to refund it (the compensation replays the key only when a charge may exist).
    if (attempt === 'first' && err instanceof PaymentUnavailableError && !err.sent)
      await orders.unmarkChargeAttempted(deps.db, order.id);
    throw err;
  }
  faultPoint('charge-answered');
  if (outcome.status === 'declined') {
    const reason = `payment declined: ${outcome.code}`;
    return endCancelled(deps, order, { reason, forward: true });
  }
  return paid(deps, order, { detail: `charged ${outcome.id}`, chargeId: outcome.id });
}

async function paid(
  deps: WorkflowDeps,
  order: Order,
  how: { detail: string; chargeId?: string },
): Promise<boolean> {
  const moved = await withTransaction(deps.db, async (client) => {
    const changed = await orders.transition(client, order.id, 'reserved', 'paid', { ...how, forward: true });
    if (!changed) return false;
    await enqueueStep(deps.jobs, client, { orderId: order.id, step: 'confirm' });
    return true;
  });
  if (moved) entered(deps, 'paid');
  return moved;
}

async function confirm(deps: WorkflowDeps, order: Order): Promise<boolean> {
  const confirmed = await orders.transition(deps.db, order.id, 'paid', 'confirmed', {
    detail: 'confirmed',
    forward: true,
  });
  if (confirmed) entered(deps, 'confirmed');
  return confirmed !== undefined;
}

// The charge of an order whose charge step may have reached the provider without recording the
// answer (a crash, a cancel in between): the same key answers the first outcome again (or,
// when the first call never arrived, charges now, to be refunded at once).
async function chargeToRefund(
  deps: WorkflowDeps,
  order: Order,
): Promise<{ id: string; amount: number } | null> {
  if (order.chargeId !== null) return { id: order.chargeId, amount: cents(order.total) };
  if (!order.chargeAttempted) return null;
  const outcome = await chargeOf(deps, order);
  return outcome.status === 'succeeded' ? { id: outcome.id, amount: outcome.amount } : null;
}

// Undoes what the order holds (the payment, then the stock) and ends it cancelled.
async function compensate(deps: WorkflowDeps, order: Order): Promise<boolean> {
  const reason = order.cancelReason ?? 'cancelled';
  const taken = await chargeToRefund(deps, order);
  if (!taken) return endCancelled(deps, order, { reason, forward: false, uncharged: !order.chargeAttempted });
  const refund = await deps.payments.refund(
    { charge: taken.id, amount: taken.amount, idempotencyKey: `${order.paymentReference}-refund` },
    AbortSignal.timeout(CALL_DEADLINE_MS),
  );
  faultPoint('refund-answered');
  return endCancelled(deps, order, { reason, forward: false, refund: refund.id });
}

// The order cancelled from its current status, with its stock (if reserved) given back in the
// same transaction.
async function endCancelled(
  deps: WorkflowDeps,
  order: Order,
  why: { reason: string; forward: boolean; uncharged?: boolean; refund?: string },
): Promise<boolean> {
  const moved = await withTransaction(deps.db, async (client) => {
    const cancelled = await orders.transition(client, order.id, order.status, 'cancelled', {
      detail: why.refund ? `${why.reason}; refunded ${why.refund}` : why.reason,
      failureReason: why.reason,
      forward: why.forward,
      uncharged: why.uncharged,
    });
    if (!cancelled) return false;
    if (order.status !== 'pending') await releaseStock(client, linesOf(order));
    return true;
  });
  if (moved) entered(deps, 'cancelled');
  return moved;
}
