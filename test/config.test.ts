// Settings come from Go-style flags, their GREENLIGHT_* environment twins, a development
// .env file and the book's defaults, in that order of precedence.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  buildConfig,
  ConfigError,
  FLAGS,
  parseArgs,
  parseDuration,
  readSettings,
  redactArgv,
} from '../src/config.ts';
import { createLogger } from '../src/platform/logger.ts';

// readSettings reads ./.env: this file runs in an empty directory of its own, so a developer's
// .env cannot change the results (each test file runs in its own process).
const home = process.cwd();
const scratch = mkdtempSync(join(tmpdir(), 'greenlight-config-test-'));
process.chdir(scratch);
after(() => {
  process.chdir(home);
  rmSync(scratch, { recursive: true, force: true });
});

type Env = Record<string, string>;

function config(argv: readonly string[] = [], env: Env = {}) {
  return buildConfig(readSettings(argv, env));
}

// The message of the ConfigError that `fn` throws.
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  return assert.fail('expected a ConfigError, got none');
}

describe('parseArgs: Go flag syntax', () => {
  for (const argv of [['-port', '4001'], ['-port=4001'], ['--port', '4001'], ['--port=4001']]) {
    test(`when the flag is written ${argv.join(' ')}, then port is 4001`, () => {
      assert.equal(parseArgs(argv).values.get('port'), '4001');
      assert.equal(config(argv).port, 4001);
    });
  }

  test('when a boolean flag stands alone, then it is true', () => {
    assert.equal(parseArgs(['-limiter-enabled']).values.get('limiter-enabled'), 'true');
    assert.equal(config(['-limiter-enabled'], { GREENLIGHT_LIMITER_ENABLED: 'false' }).limiter.enabled, true);
  });

  test('when a boolean flag is given =false, then it is false', () => {
    assert.equal(config(['-limiter-enabled=false']).limiter.enabled, false);
    assert.equal(config(['--limiter-enabled=false']).limiter.enabled, false);
  });

  test('when a boolean uses any of strconv.ParseBool spellings, then it is accepted', () => {
    for (const yes of ['1', 't', 'T', 'true', 'TRUE', 'True']) {
      assert.equal(config([`-limiter-enabled=${yes}`]).limiter.enabled, true, yes);
    }
    for (const no of ['0', 'f', 'F', 'false', 'FALSE', 'False']) {
      assert.equal(config([`-limiter-enabled=${no}`]).limiter.enabled, false, no);
    }
  });

  test('when a value contains =, then only the first = splits name from value', () => {
    const dsn = 'postgres://u:p@h/db?sslmode=disable';
    assert.equal(config([`-db-dsn=${dsn}`]).db.dsn, dsn);
  });

  test('when words surround the flags, then they are positionals', () => {
    const args = parseArgs(['migrate', 'down', '1', '-db-dsn=postgres://x/y']);
    assert.deepEqual(args.positionals, ['migrate', 'down', '1']);
    assert.equal(args.values.get('db-dsn'), 'postgres://x/y');
    assert.deepEqual(parseArgs(['-port', '4001', 'serve']).positionals, ['serve']);
    assert.deepEqual(parseArgs(['migrate', 'down', '-all']).positionals, ['migrate', 'down']);
  });

  test('when -- appears, then everything after it is positional', () => {
    const args = parseArgs(['seed', '--', '-count', '5']);
    assert.deepEqual(args.positionals, ['seed', '-count', '5']);
    assert.equal(args.values.has('count'), false);
  });

  test('when a lone - is given, then it is a positional', () => {
    assert.deepEqual(parseArgs(['-']).positionals, ['-']);
  });

  test('when -h or -help is given, then help is set', () => {
    assert.equal(readSettings(['-h'], {}).get('help'), true);
    assert.equal(readSettings(['-help'], {}).get('help'), true);
  });

  test('when a flag is not defined, then "flag provided but not defined: -nope"', () => {
    assert.equal(
      configError(() => readSettings(['-nope'], {})),
      'flag provided but not defined: -nope',
    );
    assert.equal(
      configError(() => readSettings(['--nope=1'], {})),
      'flag provided but not defined: -nope',
    );
  });

  test('when a flag lacks its value, then "flag needs an argument"', () => {
    assert.equal(
      configError(() => readSettings(['-port'], {})),
      'flag needs an argument: -port',
    );
    assert.equal(
      configError(() => readSettings(['--db-dsn'], {})),
      'flag needs an argument: -db-dsn',
    );
  });
});

describe('readSettings: environment twins', () => {
  test('when GREENLIGHT_* variables are set, then they configure the service', () => {
    const cfg = config([], {
      GREENLIGHT_PORT: '5000',
      GREENLIGHT_DB_MAX_OPEN_CONNS: '10',
      GREENLIGHT_DB_MAX_IDLE_CONNS: '5',
      GREENLIGHT_DB_MAX_IDLE_TIME: '1h',
      GREENLIGHT_LIMITER_RPS: '0.5',
      GREENLIGHT_LIMITER_BURST: '8',
      GREENLIGHT_LIMITER_ENABLED: 'false',
      GREENLIGHT_SHUTDOWN_TIMEOUT: '5s',
    });
    assert.equal(cfg.port, 5000);
    assert.equal(cfg.db.maxOpenConns, 10);
    assert.equal(cfg.db.maxIdleConns, 5);
    assert.equal(cfg.db.maxIdleTimeMs, 3_600_000);
    assert.deepEqual(cfg.limiter, { rps: 0.5, burst: 8, enabled: false });
    assert.equal(cfg.shutdownTimeoutMs, 5000);
  });

  test('when both a flag and its variable are set, then the flag wins', () => {
    assert.equal(config(['-port', '6000'], { GREENLIGHT_PORT: '5000' }).port, 6000);
    assert.equal(config(['-limiter-burst=2'], { GREENLIGHT_LIMITER_BURST: '8' }).limiter.burst, 2);
  });

  test('when variables without the GREENLIGHT_ prefix are set, then they are ignored', () => {
    assert.equal(config([], { PORT: '5000', port: '5000' }).port, 4000);
  });

  test('when a variable holds a bad value, then the error names the flag and the variable', () => {
    assert.equal(
      configError(() => readSettings([], { GREENLIGHT_PORT: 'abc' })),
      'invalid value "abc" for -port (GREENLIGHT_PORT): must be an integer',
    );
  });
});

describe('readSettings: the .env file', () => {
  const withDotEnv = join(scratch, 'with-dotenv');
  before(() => {
    mkdirSync(withDotEnv);
    writeFileSync(join(withDotEnv, '.env'), 'GREENLIGHT_PORT=5001\nGREENLIGHT_LIMITER_BURST=9\n');
    process.chdir(withDotEnv);
  });
  after(() => process.chdir(scratch));

  test('when .env sets a variable, then it beats the default', () => {
    const settings = readSettings([], {});
    assert.equal(settings.get('port'), 5001);
    assert.equal(settings.get('limiter-burst'), 9);
  });

  test('when the environment also sets it, then the environment wins', () => {
    assert.equal(readSettings([], { GREENLIGHT_PORT: '5002' }).get('port'), 5002);
  });

  test('when a flag also sets it, then the flag wins', () => {
    assert.equal(readSettings(['-port=5003'], { GREENLIGHT_PORT: '5002' }).get('port'), 5003);
  });

  test('when the environment is production, then .env is not read', () => {
    assert.equal(readSettings(['-env', 'production'], {}).get('port'), 4000);
    assert.equal(readSettings([], { GREENLIGHT_ENV: 'production' }).get('port'), 4000);
  });
});

describe('buildConfig: the book defaults', () => {
  test('when nothing is set, then the book defaults apply', () => {
    const cfg = config();
    assert.equal(cfg.port, 4000);
    assert.equal(cfg.env, 'development');
    assert.equal(cfg.db.dsn, '');
    assert.equal(cfg.db.maxOpenConns, 25);
    assert.equal(cfg.db.maxIdleConns, 25);
    assert.equal(cfg.db.maxIdleTimeMs, 15 * 60_000);
    assert.deepEqual(cfg.limiter, { rps: 2, burst: 4, enabled: true });
    assert.equal(cfg.shutdownTimeoutMs, 30_000);
    assert.deepEqual(cfg.trustedProxies, []);
  });

  test('when nothing is set, then connections get short read timeouts and a cap per address', () => {
    assert.deepEqual(config().http, {
      readHeaderTimeoutMs: 10_000,
      readTimeoutMs: 30_000,
      idleTimeoutMs: 60_000,
      maxConnections: 0,
      maxConnectionsPerIp: 256,
    });
    assert.equal(config().limiterAddressCeiling, 4);
  });

  test('when the config is built, then it is frozen', () => {
    const cfg = config();
    assert.ok(Object.isFrozen(cfg));
    assert.ok(Object.isFrozen(cfg.db));
    assert.ok(Object.isFrozen(cfg.limiter));
    assert.ok(Object.isFrozen(cfg.trustedProxies));
  });

  test('when port is 0 or 65535, then it is accepted', () => {
    assert.equal(config(['-port=0']).port, 0);
    assert.equal(config(['-port=65535']).port, 65535);
  });
});

describe('buildConfig: bad values stop with a ConfigError naming the flag and its variable', () => {
  const cases: [string, readonly string[], Env, string][] = [
    [
      'events-retention is 30s',
      ['-events-retention', '30s'],
      {},
      'invalid -events-retention (GREENLIGHT_EVENTS_RETENTION): must be between 1m and 8760h',
    ],
    [
      'events-heartbeat is 10m',
      ['-events-heartbeat=10m'],
      {},
      'invalid -events-heartbeat (GREENLIGHT_EVENTS_HEARTBEAT): must be between 100ms and 5m',
    ],
    [
      'events-poll is 10ms',
      ['-events-poll=10ms'],
      {},
      'invalid -events-poll (GREENLIGHT_EVENTS_POLL): must be between 50ms and 1m',
    ],
    [
      'ws-ping is 0s',
      ['-ws-ping=0s'],
      {},
      'invalid -ws-ping (GREENLIGHT_WS_PING): must be between 100ms and 5m',
    ],
    [
      'stream-max-buffered is 100',
      ['-stream-max-buffered', '100'],
      {},
      'invalid -stream-max-buffered (GREENLIGHT_STREAM_MAX_BUFFERED): must be at least 1024',
    ],
    ['port is 70000', ['-port', '70000'], {}, 'invalid -port (GREENLIGHT_PORT): must be between 0 and 65535'],
    ['port is -1', ['-port=-1'], {}, 'invalid -port (GREENLIGHT_PORT): must be between 0 and 65535'],
    [
      'port is not a number',
      ['-port', 'http'],
      {},
      'invalid value "http" for -port (GREENLIGHT_PORT): must be an integer',
    ],
    ['port is empty', ['-port='], {}, 'invalid value "" for -port (GREENLIGHT_PORT): must be an integer'],
    [
      'env is prod',
      [],
      { GREENLIGHT_ENV: 'prod' },
      'invalid -env (GREENLIGHT_ENV): must be one of development, staging, production',
    ],
    [
      'limiter-rps is 0',
      ['-limiter-rps', '0'],
      {},
      'invalid -limiter-rps (GREENLIGHT_LIMITER_RPS): must be between 0.01 and 1000000',
    ],
    [
      'limiter-rps is a denormal',
      ['-limiter-rps', '1e-320'],
      {},
      'invalid -limiter-rps (GREENLIGHT_LIMITER_RPS): must be between 0.01 and 1000000',
    ],
    [
      'limiter-rps is not a number',
      ['-limiter-rps=fast'],
      {},
      'invalid value "fast" for -limiter-rps (GREENLIGHT_LIMITER_RPS): must be a number',
    ],
    [
      'limiter-burst is 0',
      ['-limiter-burst=0'],
      {},
      'invalid -limiter-burst (GREENLIGHT_LIMITER_BURST): must be between 1 and 1000000',
    ],
    [
      'limiter-enabled is yes',
      [],
      { GREENLIGHT_LIMITER_ENABLED: 'yes' },
      'invalid value "yes" for -limiter-enabled (GREENLIGHT_LIMITER_ENABLED): must be a boolean',
    ],
    [
      'db-max-idle-time is not a duration',
      ['-db-max-idle-time', '5 minutes'],
      {},
      'invalid value "5 minutes" for -db-max-idle-time (GREENLIGHT_DB_MAX_IDLE_TIME): must be a duration such as 30s, 15m or 1h',
    ],
    [
      'shutdown-timeout has no unit',
      [],
      { GREENLIGHT_SHUTDOWN_TIMEOUT: '30' },
      'invalid value "30" for -shutdown-timeout (GREENLIGHT_SHUTDOWN_TIMEOUT): must be a duration such as 30s, 15m or 1h',
    ],
    [
      'read-header-timeout is under a second',
      ['-read-header-timeout', '500ms'],
      {},
      'invalid -read-header-timeout (GREENLIGHT_READ_HEADER_TIMEOUT): must be between 1s and 1h',
    ],
    [
      'read-timeout is shorter than the header timeout',
      ['-read-timeout', '5s'],
      {},
      'invalid -read-timeout (GREENLIGHT_READ_TIMEOUT): must not be shorter than -read-header-timeout',
    ],
    [
      'idle-timeout is 0',
      [],
      { GREENLIGHT_IDLE_TIMEOUT: '0' },
      'invalid -idle-timeout (GREENLIGHT_IDLE_TIMEOUT): must be between 1s and 24h',
    ],
    [
      'max-connections is negative',
      ['-max-connections=-1'],
      {},
      'invalid -max-connections (GREENLIGHT_MAX_CONNECTIONS): must not be negative',
    ],
    [
      'max-connections-per-ip is negative',
      ['-max-connections-per-ip=-5'],
      {},
      'invalid -max-connections-per-ip (GREENLIGHT_MAX_CONNECTIONS_PER_IP): must not be negative',
    ],
    [
      'limiter-address-ceiling is below 1',
      ['-limiter-address-ceiling=0.5'],
      {},
      'invalid -limiter-address-ceiling (GREENLIGHT_LIMITER_ADDRESS_CEILING): must be at least 1',
    ],
    [
      'db-max-open-conns is 0',
      ['-db-max-open-conns=0'],
      {},
      'invalid -db-max-open-conns (GREENLIGHT_DB_MAX_OPEN_CONNS): must be at least 1',
    ],
    [
      'db-dsn is not a PostgreSQL URL',
      ['-db-dsn=mysql://x/y'],
      {},
      'invalid -db-dsn (GREENLIGHT_DB_DSN): must be a postgres:// or postgresql:// URL (a port from 1 to 65535)',
    ],
    [
      'db-dsn has port 99999',
      ['-db-dsn=postgres://u:p@db.example.com:99999/greenlight'],
      {},
      'invalid -db-dsn (GREENLIGHT_DB_DSN): must be a postgres:// or postgresql:// URL (a port from 1 to 65535)',
    ],
    [
      'db-query-timeout is past what PostgreSQL takes',
      ['-db-query-timeout', '1000h'],
      {},
      'invalid -db-query-timeout (GREENLIGHT_DB_QUERY_TIMEOUT): must be between 1ms and 24h',
    ],
    [
      'shutdown-timeout is past what setTimeout takes',
      ['-shutdown-timeout', '1000h'],
      {},
      'invalid -shutdown-timeout (GREENLIGHT_SHUTDOWN_TIMEOUT): must be between 0 and 1h',
    ],
    [
      'callbacks-ttl is past what an interval holds',
      ['-callbacks-ttl', '100000000000000000000h'],
      {},
      'invalid value "100000000000000000000h" for -callbacks-ttl (GREENLIGHT_CALLBACKS_TTL): is longer than any duration (about 292 years)',
    ],
    [
      'callbacks-ttl is a year',
      ['-callbacks-ttl', '8760h'],
      {},
      'invalid -callbacks-ttl (GREENLIGHT_CALLBACKS_TTL): must be between 1s and 720h',
    ],
    [
      'callbacks-addr has no port',
      ['-callbacks-addr', 'localhost'],
      {},
      'invalid -callbacks-addr (GREENLIGHT_CALLBACKS_ADDR): must be host:port (port 0 picks a free one), or empty to disable the listener',
    ],
    [
      'callbacks-upstream is not an http URL',
      ['-callbacks-upstream', 'localhost:9010'],
      {},
      'invalid -callbacks-upstream (GREENLIGHT_CALLBACKS_UPSTREAM): must be an http:// or https:// URL',
    ],
    [
      'callbacks-ttl is under a second',
      ['-callbacks-ttl', '500ms'],
      {},
      'invalid -callbacks-ttl (GREENLIGHT_CALLBACKS_TTL): must be between 1s and 720h',
    ],
    [
      'callbacks-concurrency is 0',
      ['-callbacks-concurrency', '0'],
      {},
      'invalid -callbacks-concurrency (GREENLIGHT_CALLBACKS_CONCURRENCY): must be between 1 and 100000',
    ],
    [
      'poster-max-bytes is under 1024',
      ['-poster-max-bytes', '100'],
      {},
      'invalid -poster-max-bytes (GREENLIGHT_POSTER_MAX_BYTES): must be at least 1024',
    ],
    [
      's3-endpoint has a path',
      ['-s3-endpoint', 'http://127.0.0.1:9000/bucket', '-s3-bucket', 'b'],
      {},
      'invalid -s3-endpoint (GREENLIGHT_S3_ENDPOINT): must be an http:// or https:// URL with no path',
    ],
    [
      's3-endpoint is set without a bucket',
      ['-s3-endpoint', 'http://127.0.0.1:9000'],
      {},
      'invalid -s3-bucket (GREENLIGHT_S3_BUCKET): is required when -s3-endpoint is set',
    ],
    [
      's3-access-key-id is set without its secret',
      ['-s3-bucket', 'b'],
      { GREENLIGHT_S3_ACCESS_KEY_ID: 'AKIA' },
      'invalid -s3-secret-access-key (GREENLIGHT_S3_SECRET_ACCESS_KEY): must be set together with -s3-access-key-id',
    ],
  ];
  for (const [what, argv, env, message] of cases) {
    test(`when ${what}, then "${message}"`, () => {
      assert.equal(
        configError(() => config(argv, env)),
        message,
      );
    });
  }
});

describe('buildConfig: poster storage', () => {
  test('when no bucket is set, then posters go to <data-dir>/posters, at most 5 MiB each', () => {
    const c = config(['-data-dir', '/srv/greenlight']);
    assert.deepEqual(c.posters, { maxBytes: 5_242_880, directory: '/srv/greenlight/posters', s3: null });
  });
  test('when a bucket is set, then posters go to S3 with the flags given', () => {
    const c = config(
      ['-s3-bucket', 'posters', '-s3-endpoint', 'http://127.0.0.1:9000', '-s3-force-path-style'],
      {
        GREENLIGHT_S3_ACCESS_KEY_ID: 'id',
        GREENLIGHT_S3_SECRET_ACCESS_KEY: 'secret',
      },
    );
    assert.deepEqual(c.posters.s3, {
      endpoint: 'http://127.0.0.1:9000',
      bucket: 'posters',
      region: 'us-east-1',
      accessKeyId: 'id',
      secretAccessKey: 'secret',
      forcePathStyle: true,
    });
  });
});

describe('buildConfig: trusted proxies', () => {
  test('when proxies are separated by white space, then each one is kept', () => {
    assert.deepEqual(
      config(['-trusted-proxies', ' 10.0.0.1 192.168.0.0/16\t::1  2001:db8::/32 ']).trustedProxies,
      ['10.0.0.1', '192.168.0.0/16', '::1', '2001:db8::/32'],
    );
  });

  test('when proxies come from GREENLIGHT_TRUSTED_PROXIES, then they are parsed the same way', () => {
    assert.deepEqual(config([], { GREENLIGHT_TRUSTED_PROXIES: '127.0.0.1 10.0.0.0/8' }).trustedProxies, [
      '127.0.0.1',
      '10.0.0.0/8',
    ]);
  });

  test('when a proxy is a host name, then a ConfigError names the value, the flag and the variable', () => {
    assert.equal(
      configError(() => config(['-trusted-proxies=10.0.0.1 proxy.example.com'])),
      'invalid -trusted-proxies (GREENLIGHT_TRUSTED_PROXIES): "proxy.example.com" is not an IP address or CIDR',
    );
  });

  // Fastify's proxy-addr throws a TypeError at start-up for each of these.
  test('when a proxy only looks like an address (cafe, 999.1.1.1, 1.2.3, /33, /129), then a ConfigError', () => {
    for (const proxy of ['cafe', '999.1.1.1', '1.2.3', '10.0.0.0/33', '::1/129']) {
      const message = configError(() => config(['-trusted-proxies', proxy]));
      assert.match(message, /^invalid -trusted-proxies \(GREENLIGHT_TRUSTED_PROXIES\): /, proxy);
    }
  });
});

describe('parseDuration', () => {
  const valid: [string, number][] = [
    ['15m', 15 * 60_000],
    ['30s', 30_000],
    ['3s', 3000],
    ['250ms', 250],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['2h45m30s', 9_930_000],
    ['1.5s', 1500],
    ['0', 0],
    ['0s', 0],
  ];
  for (const [text, ms] of valid) {
    test(`when the text is ${text}, then it is ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }

  for (const text of ['', '15', '1m30', '5 minutes', '1d', 'm', 's15']) {
    test(`when the text is "${text}", then it throws`, () => {
      assert.throws(() => parseDuration(text));
    });
  }
});

describe('buildConfig: the callback service', () => {
  test('when nothing is set, then the task defaults apply', () => {
    const { callbacks } = config();
    assert.deepEqual(callbacks.listen, { host: 'localhost', port: 9090 });
    assert.equal(callbacks.upstream, 'http://localhost:9010');
    assert.equal(callbacks.ttlMs, 30_000);
    assert.equal(callbacks.concurrency, 200);
    assert.equal(callbacks.upstreamTimeoutMs, 5_000);
  });

  test('when the address is :9090, [::1]:0 or empty, then every interface, IPv6 loopback, or no listener', () => {
    assert.deepEqual(config(['-callbacks-addr', ':9090']).callbacks.listen, { host: '0.0.0.0', port: 9090 });
    assert.deepEqual(config(['-callbacks-addr', '[::1]:0']).callbacks.listen, { host: '::1', port: 0 });
    assert.equal(config(['-callbacks-addr=']).callbacks.listen, null);
  });

  test('when the upstream URL ends in a slash, then the slash is dropped', () => {
    assert.equal(
      config(['-callbacks-upstream', 'http://up:9010/api/']).callbacks.upstream,
      'http://up:9010/api',
    );
  });
});

describe('buildConfig: the listen address', () => {
  test('when -host is not given, then development listens on loopback only and staging and production on every interface', () => {
    assert.equal(config().host, '127.0.0.1');
    assert.equal(config(['-env', 'development']).host, '127.0.0.1');
    const secret = ['-jwt-secret', randomBytes(32).toString('base64')];
    assert.equal(config(['-env', 'staging', ...secret]).host, '0.0.0.0');
    assert.equal(config(['-env', 'production', ...secret]).host, '0.0.0.0');
  });

  test('when -host or GREENLIGHT_HOST is given, then it is used in any environment', () => {
    assert.equal(config(['-host', '0.0.0.0']).host, '0.0.0.0');
    assert.equal(config([], { GREENLIGHT_HOST: '::' }).host, '::');
    const secret = ['-jwt-secret', randomBytes(32).toString('base64')];
    assert.equal(config(['-env', 'production', '-host', '127.0.0.1', ...secret]).host, '127.0.0.1');
  });
});

describe('secret flags', () => {
  // Flags whose name looks like a credential's but whose value is not one, each with why.
  const NOT_SECRET: Readonly<Record<string, string>> = {
    'jwt-key-dir': 'a directory; the keys are 0600 files in it',
    'grpc-tls-key': 'a file path; the key is the file',
  };
  const LOOKS_SECRET = /secret|password|passwd|key|token|dsn|credential|url$/;

  test('when a flag is named like a credential, then it is declared secret (or listed here with why not)', () => {
    const forgotten = FLAGS.filter((f) => LOOKS_SECRET.test(f.name) && !f.secret && !NOT_SECRET[f.name]);
    assert.deepEqual(
      forgotten.map((f) => f.name),
      [],
    );
    for (const name of Object.keys(NOT_SECRET)) assert.ok(FLAGS.some((f) => f.name === name && !f.secret));
    const secrets = FLAGS.filter((f) => f.secret).map((f) => f.name);
    for (const name of ['db-dsn', 'redis-url', 'smtp-password', 'jwt-secret', 's3-secret-access-key'])
      assert.ok(secrets.includes(name), name);
  });

  test('when a secret flag is on the command line, then its shown value is REDACTED in every spelling Go flags accept', () => {
    for (const spec of FLAGS.filter((f) => f.secret)) {
      const value = `${spec.name}-value-${randomBytes(4).toString('hex')}`;
      for (const argv of [
        [`-${spec.name}`, value],
        [`--${spec.name}`, value],
        [`-${spec.name}=${value}`],
        [`--${spec.name}=${value}`],
      ]) {
        const shown = redactArgv(['node', 'src/main.ts', 'serve', '-port', '1', ...argv]);
        assert.ok(!shown.join(' ').includes(value), `${argv.join(' ')} shown as ${shown.join(' ')}`);
        assert.match(shown.join(' '), /REDACTED/);
      }
    }
  });

  test('when a URL flag that is not secret carries credentials, then they are not shown', () => {
    assert.deepEqual(
      redactArgv(['-otel-endpoint', 'https://collector:s3cr3t-token@otel.example:4318', '-port', '1']),
      ['-otel-endpoint', 'https://REDACTED@otel.example:4318', '-port', '1'],
    );
  });

  test('when a URL flag carries a credential in its query string or a password with an @, then it is not shown', () => {
    assert.deepEqual(
      redactArgv([
        '-zipkin-endpoint',
        'http://127.0.0.1:4857/api/v2/spans?api_key=QSECRET1&region=eu',
        '-callbacks-upstream=http://127.0.0.1:4856/?token=QSECRET2',
        '-otel-endpoint',
        'https://user:p@ss@otel.example:4318/v1/traces',
      ]),
      [
        '-zipkin-endpoint',
        'http://127.0.0.1:4857/api/v2/spans?api_key=REDACTED&region=eu',
        '-callbacks-upstream=http://127.0.0.1:4856/?token=REDACTED',
        '-otel-endpoint',
        'https://REDACTED@otel.example:4318/v1/traces',
      ],
    );
  });

  test('when a log line names a URL with credentials (the callback service start line), then the log holds none', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => lines.push(line) });
    logger.info(
      { addr: '127.0.0.1:1', upstream: 'http://cbuser:CBSECRETpw@127.0.0.1:4857/?token=QSECRET2' },
      'callback service started',
    );
    logger.info({ url: 'https://u:URLSECRETpw@h.example/x?api_key=QSECRET3' }, 'called');
    const logged = lines.join('');
    for (const secret of ['CBSECRETpw', 'QSECRET2', 'URLSECRETpw', 'QSECRET3'])
      assert.ok(!logged.includes(secret), logged);
    assert.match(logged, /"upstream":"http:\/\/REDACTED@127\.0\.0\.1:4857\/\?token=REDACTED"/);
  });

  const PLACEHOLDER_MESSAGE = (flag: string) =>
    `invalid -${flag} (GREENLIGHT_${flag.toUpperCase().replaceAll('-', '_')}): is a placeholder or published example, not a secret: set a real one (e.g. openssl rand -base64 32)`;

  for (const value of [
    'change-me-to-32-random-bytes-or-more',
    'changemechangemechangemechangeme',
    'a'.repeat(32),
    'abc'.repeat(11),
    'secret'.repeat(6),
    'REPLACE_ME_WITH_A_LONG_RANDOM_SECRET',
    '................................',
  ]) {
    test(`when -jwt-secret is the placeholder "${value}", then start-up refuses it, naming the flag`, () => {
      const message = configError(() => config(['-env', 'production', '-jwt-secret', value]));
      assert.equal(message, PLACEHOLDER_MESSAGE('jwt-secret'));
      assert.equal(
        configError(() => config([], { GREENLIGHT_JWT_SECRET: value })),
        PLACEHOLDER_MESSAGE('jwt-secret'),
      );
    });
  }

  test('when -jwt-secret is random, then it is accepted', () => {
    const jwtSecret = randomBytes(32).toString('base64');
    assert.equal(config(['-env', 'production', '-jwt-secret', jwtSecret]).auth.jwtSecret, jwtSecret);
  });
});
