// Mail is a durable job: it survives a crash between commit and send, and an SMTP outage.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTestApp, createTestDatabase } from './helpers.ts';
import { freePort, startServer } from './processes.ts';
import { SmtpSink, tokenIn } from './smtp-sink.ts';

async function register(port: number, email: string) {
  const res = await fetch(`http://127.0.0.1:${port}/v1/users`, {
    method: 'POST',
    body: JSON.stringify({ name: 'Durable', email, password: 'pa55word' }),
  });
  assert.equal(res.status, 202);
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('mail durability', () => {
  test('when the process is SIGKILLed right after a registration commits, then the mail is sent after restart', async (t) => {
    const dsn = await createTestDatabase();
    const smtpPort = await freePort(); // nothing listens yet: the first process cannot send
    const flags = ['-db-dsn', dsn, '-smtp-host', '127.0.0.1', '-smtp-port', String(smtpPort)];

    const first = await startServer(t, flags);
    await register(first.port, 'crash@example.com');
    first.child.kill('SIGKILL');
    await first.waitForExit(5_000);

    const sink = new SmtpSink();
    await sink.start(smtpPort);
    t.after(() => sink.stop());
    const second = await startServer(t, flags);
    const [mail] = await sink.waitFor('crash@example.com', 1, 20_000);
    assert.equal(mail?.subject, 'Welcome to Greenlight!');
    assert.match(tokenIn(mail as NonNullable<typeof mail>), /^[A-Z2-7]{26}$/);

    second.child.kill('SIGTERM');
    assert.deepEqual(await second.waitForExit(20_000), { code: 0, signal: null });
    assert.ok(second.logs.some((l) => l.msg === 'completing background tasks'));
    assert.equal(sink.mails.filter((m) => m.to === 'crash@example.com').length, 1);
  });

  test('when the process is SIGKILLed while a mail is being sent, then the mail goes out within 30 s of the restart', async (t) => {
    const dsn = await createTestDatabase();
    const sink = new SmtpSink();
    sink.stall = true;
    const smtpPort = await sink.start();
    t.after(() => sink.stop());
    const flags = ['-db-dsn', dsn, '-smtp-host', '127.0.0.1', '-smtp-port', String(smtpPort)];

    const first = await startServer(t, flags);
    await register(first.port, 'midsend@example.com');
    await waitFor(() => sink.stalled === 1, 10_000, 'the send to hang in DATA');
    first.child.kill('SIGKILL');
    await first.waitForExit(5_000);
    sink.stall = false;

    const restarted = Date.now();
    await startServer(t, flags);
    await sink.waitFor('midsend@example.com', 1, 30_000);
    const took = Date.now() - restarted;
    assert.ok(took < 30_000, `delivered ${took} ms after the restart`);
    t.diagnostic(`delivered ${took} ms after the restart`);
    assert.equal(sink.mails.filter((m) => m.to === 'midsend@example.com').length, 1);
  });

  test('when the SMTP server is down, then the mail is retried and delivered exactly once when it returns', async () => {
    const smtpPort = await freePort();
    const { app, lines } = await buildTestApp({
      workers: true,
      flags: ['-smtp-host', '127.0.0.1', '-smtp-port', String(smtpPort)],
    });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/users',
      payload: { name: 'Patient', email: 'outage@example.com', password: 'pa55word' },
    });
    assert.equal(res.statusCode, 202);
    const userId = res.json().user.id;
    await waitFor(
      () => lines.some((l) => l.msg === 'email delivery failed; will retry'),
      10_000,
      'a failed attempt',
    );
    const failure = lines.find((l) => l.msg === 'email delivery failed; will retry');
    assert.equal(failure?.user_id, userId);
    assert.ok(failure?.job_id);

    const sink = new SmtpSink();
    await sink.start(smtpPort);
    after(() => sink.stop());
    await sink.waitFor('outage@example.com', 1, 30_000);
    await sleep(3_000);
    assert.equal(sink.mails.filter((m) => m.to === 'outage@example.com').length, 1);
  });
});
