// Flags of orders: how long an order may stay in flight before the sweep cancels it.
import { duration, type FlagValues, when } from '../platform/flags.ts';

export const ordersFlags = {
  'orders-timeout': duration({
    default: '15m',
    help: 'an order still pending, reserved or paid this long after it was placed is cancelled, with its compensations (at least `1s`; the sweep runs once a minute)',
    rule: when((ms) => ms >= 1000, 'must be at least 1s'),
  }),
};

export function ordersConfig(v: FlagValues<typeof ordersFlags>) {
  return Object.freeze({ timeoutMs: v['orders-timeout'] });
}

export type OrdersConfig = ReturnType<typeof ordersConfig>;
