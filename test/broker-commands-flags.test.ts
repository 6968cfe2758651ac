// The broker's -amqp-url read as the service reads it at start-up: a URL the broker client
// could not connect with (it would throw a TypeError printing the URL, password and all) is the
// flag's one-line error, which never shows the value.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, readSettings } from '../src/config.ts';
import { ConfigError } from '../src/platform/flags.ts';

const configOf = (url: string) => buildConfig(readSettings(['-amqp-url', url], {}));

test('when -amqp-url is not a URL the broker client can use, then a one-line error without the value', () => {
  for (const url of [
    'amqp://guest:SECRET@127.0.0.1:99999',
    'amqp://guest:SECRET@127.0.0.1:0/',
    'amqp://guest:SECRET@127.0.0.1:5861/%zz',
    'amqp://guest:SECRET@[::1',
    'amqp://guest:%zzSECRET@127.0.0.1:5672/',
    'amqp:///vhost-without-host',
    'http://guest:SECRET@127.0.0.1:5672/',
  ]) {
    assert.throws(
      () => configOf(url),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `${url}: ${String(err)}`);
        assert.match(
          err.message,
          /^invalid -amqp-url \(GREENLIGHT_AMQP_URL\): must be an amqp:\/\/ or amqps:\/\/ URL/,
        );
        assert.ok(!err.message.includes('SECRET'), err.message);
        assert.ok(!err.message.includes('\n'), err.message);
        return true;
      },
      url,
    );
  }
});

test('when -amqp-url is a well-formed URL or empty, then it is taken as it is', () => {
  for (const url of [
    '',
    'amqp://guest:guest@127.0.0.1:5672/',
    'amqps://user:p%40ss@broker.example.com/%2Fprod',
    'amqp://guest:guest@[::1]:5672',
    'amqp://localhost',
  ])
    assert.equal(configOf(url).broker.url, url);
});
