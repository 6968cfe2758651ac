// `greenlight orders list [STATUS] | show ID | retry ID`: every user's orders as an admin sees
// them, one order with its history, and the current step of an order in flight enqueued again.
import type { Db } from '../platform/db.ts';
import type { Jobs } from '../platform/jobs.ts';
import { type Order, OrderConflictError, OrderNotFoundError, parseStatus } from './order.ts';
import { getOrder, listOrders, orderEvents, retryOrder } from './orders.ts';

export const ORDERS_USAGE = 'usage: greenlight orders list [STATUS] | show ID | retry ID';

// The arguments each action takes, at least and at most.
export const ORDERS_ARITY: Readonly<Record<string, readonly [number, number]>> = {
  list: [0, 1],
  show: [1, 1],
  retry: [1, 1],
};

// A bad argument, an unknown order, or one with nothing to retry (the command exits 1).
export class OrderCommandError extends Error {}

const OPERATOR = { userId: 0, admin: true } as const;
const LIST_LIMIT = 100n;

function describe(order: Order): string {
  return [
    order.id,
    order.userId,
    order.status,
    order.total,
    order.updatedAt.toISOString(),
    order.failureReason ?? '',
  ].join('\t');
}

function orderId(raw: string): string {
  if (!/^\d{1,18}$/.test(raw)) throw new OrderCommandError(`invalid order id "${raw}"`);
  return raw;
}

export async function ordersCommand(
  deps: { db: Db; jobs: () => Promise<Jobs> },
  [action, arg = '']: readonly string[],
  print: (text: string) => void,
): Promise<void> {
  try {
    if (action === 'list') {
      const status = arg === '' ? null : parseStatus(arg);
      if (status === undefined) throw new OrderCommandError(`unknown status "${arg}"`);
      const page = await listOrders(deps.db, OPERATOR, { page: 1n, limit: LIST_LIMIT, status });
      print(['id', 'user', 'status', 'total', 'updated', 'failure'].join('\t'));
      for (const order of page.data) print(describe(order));
      if (page.total > page.data.length) print(`(the newest ${page.data.length} of ${page.total})`);
    } else if (action === 'show') {
      const order = await getOrder(deps.db, OPERATOR, orderId(arg));
      print(describe(order));
      for (const item of order.items)
        print(`  product ${item.productId}\t× ${item.quantity}\tat ${item.unitPrice}`);
      for (const event of await orderEvents(deps.db, OPERATOR, arg)) {
        print(`  ${event.at.toISOString()}\t${event.status}\t${event.detail}`);
      }
    } else {
      const { order, step } = await retryOrder({ db: deps.db, jobs: await deps.jobs() }, orderId(arg));
      print(`order ${order.id} (${order.status}): step ${step} enqueued`);
    }
  } catch (err) {
    if (err instanceof OrderNotFoundError) throw new OrderCommandError(`order ${arg} does not exist`);
    if (err instanceof OrderConflictError)
      throw new OrderCommandError(err.message.replace(/^conflict: /, ''));
    throw err;
  }
}
