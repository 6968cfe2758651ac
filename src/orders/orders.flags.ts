// Flags of orders: how long an order may stay in flight before the sweep cancels it.
import { duration, durationRange, type FlagValues } from '../platform/flags.ts';

export const ordersFlags = {
  'orders-timeout': duration({
    default: '15m',
    help: 'an order still pending, reserved or paid this long after it was placed is cancelled, with its compensations (`1s` to `720h`; the sweep runs once a minute)',
    rule: durationRange(1000, 720 * 3_600_000),
  }),
};

export function ordersConfig(v: FlagValues<typeof ordersFlags>) {
  return Object.freeze({ timeoutMs: v['orders-timeout'] });
}

export type OrdersConfig = ReturnType<typeof ordersConfig>;
