// Flags of the external payment provider: where the service reaches it and how long one
// attempt may take; and the settings of `greenlight payments stand-in`, the provider's
// stand-in for development and tests (its address, and how often it declines, fails, loses
// an answer or answers slowly).
import {
  duration,
  durationRange,
  type FlagValues,
  float,
  listenAddress,
  listenAddressRule,
  text,
  when,
} from '../platform/flags.ts';

const URL_RULE = /^https?:\/\/[^/\s]+(\/\S*)?$/;

const rate = (help: string) =>
  float({
    default: '0',
    help,
    rule: when((n) => n >= 0 && n <= 1, 'must be between 0 and 1'),
  });

export const paymentsFlags = {
  'payments-url': text({
    default: 'http://localhost:9020',
    help: 'base URL of the payment provider (`POST /v1/charges`, `POST /v1/refunds`; see [payments](payments.md)); secret, as it may carry credentials (`https://user:password@…`)',
    secret: true,
    rule: when((url) => URL_RULE.test(url), 'must be an http:// or https:// URL'),
  }),
  'payments-timeout': duration({
    default: '5s',
    help: 'timeout of one attempt of a payment call (a call makes up to 3; 1ms-1h)',
    rule: durationRange(1, 3_600_000),
  }),
  addr: text({
    default: '',
    shownDefault: '*(the host and port of `-payments-url`)*',
    help: '`payments stand-in`: the `host:port` it listens on (port `0` picks one)',
    rule: listenAddressRule('must be host:port (port 0 picks a free one)'),
  }),
  'decline-rate': rate(
    '`payments stand-in`: share of charges declined (402 `card_declined`), 0–1; `tok_visa` always succeeds, `tok_declined` always declines',
  ),
  'error-rate': rate('`payments stand-in`: share of calls answered 500 without being applied, 0–1'),
  'lost-rate': rate(
    '`payments stand-in`: share of calls applied whose answer is lost (the connection is dropped), 0–1',
  ),
  latency: duration({
    default: '0',
    help: '`payments stand-in`: delay before each answer (0-1h)',
    rule: durationRange(0, 3_600_000),
  }),
};

// Without -addr, where -payments-url points ("localhost" on IPv4 loopback, where clients of
// http://localhost:… try first).
function listenOf(addr: string, url: URL): Readonly<{ host: string; port: number }> {
  const listen = listenAddress(addr);
  if (listen) return listen;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return {
    host: host === 'localhost' ? '127.0.0.1' : host,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
  };
}

export function paymentsConfig(v: FlagValues<typeof paymentsFlags>) {
  const url = v['payments-url'].replace(/\/+$/, '');
  return Object.freeze({
    url,
    timeoutMs: v['payments-timeout'],
    standIn: Object.freeze({
      ...listenOf(v.addr, new URL(url)),
      declineRate: v['decline-rate'],
      errorRate: v['error-rate'],
      lostRate: v['lost-rate'],
      latencyMs: v.latency,
    }),
  });
}

export type PaymentsConfig = ReturnType<typeof paymentsConfig>;
