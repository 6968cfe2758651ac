// Flags of the message broker (src/broker): where it is, the exchange the outboxes' events are
// published to and the queue commands are taken from. Empty -amqp-url: no broker at all.
import { duration, type FlagValues, int, text, when } from '../platform/flags.ts';

const NAME = /^[A-Za-z0-9_.:-]{1,200}$/;

// Whether the broker client can connect to the URL as written: it parses it with `new URL`,
// takes the port as a number and percent-decodes the vhost, and throws a TypeError with the
// whole URL (its password) when it cannot. Checked here, the flag's error names no value.
function isAmqpUrl(url: string): boolean {
  if (!/^amqps?:\/\/[^\s]+$/.test(url)) return false;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const port = parsed.port === '' ? 1 : Number(parsed.port);
  if (parsed.hostname === '' || port < 1 || port > 65_535) return false;
  try {
    decodeURIComponent(parsed.pathname);
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
    return true;
  } catch {
    return false;
  }
}

export const brokerFlags = {
  'amqp-url': text({
    default: '',
    help: 'RabbitMQ URL (`amqp://user:password@host:5672/vhost`, or `amqps://`; port 1-65535, vhost percent-encoded; a malformed one stops start-up with an error that does not show it); when set, every committed movie, product and order event is published to `-amqp-exchange` and commands are taken from `-amqp-commands-queue`; empty: no broker',
    secret: true,
    rule: when(
      (url) => url === '' || isAmqpUrl(url),
      'must be an amqp:// or amqps:// URL (host, port 1-65535, a percent-encoded vhost), or empty',
    ),
  }),
  'amqp-exchange': text({
    default: 'greenlight.events',
    help: 'topic exchange the domain events are published to, routing key = event type (`movie.updated`)',
    rule: when((name) => NAME.test(name), 'must be 1-200 letters, digits, `_ . : -`'),
  }),
  'amqp-commands-queue': text({
    default: 'greenlight.commands',
    help: 'durable queue of commands (`movies.import`, `orders.place`); what can never succeed goes to `<queue>.dead`, a retry waits out its backoff in `<queue>.retry.<delay>ms`; empty: no command consumer',
    rule: when(
      (name) => name === '' || NAME.test(name),
      'must be 1-200 letters, digits, `_ . : -`, or empty',
    ),
  }),
  'amqp-commands-concurrency': int({
    default: '2',
    help: 'commands processed at once per process (1-64)',
    rule: when((n) => n >= 1 && n <= 64, 'must be between 1 and 64'),
  }),
  'amqp-relay-poll': duration({
    default: '250ms',
    help: 'safety poll of the event relay, which covers a lost wake-up; also how often a standby instance tries to take over the relay (50ms-10s)',
    rule: when((ms) => ms >= 50 && ms <= 10_000, 'must be between 50ms and 10s'),
  }),
};

export function brokerConfig(v: FlagValues<typeof brokerFlags>) {
  return Object.freeze({
    url: v['amqp-url'],
    exchange: v['amqp-exchange'],
    commandsQueue: v['amqp-commands-queue'],
    commandsConcurrency: v['amqp-commands-concurrency'],
    relayPollMs: v['amqp-relay-poll'],
  });
}

export type BrokerConfig = ReturnType<typeof brokerConfig>;
