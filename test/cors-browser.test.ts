// CORS as a real browser enforces it: headless Chromium loads the `greenlight demo cors`
// pages, which fetch from the API on another origin. Chromium must be installed at
// /usr/bin/chromium (Debian package `chromium`); without it these tests fail.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.ts';
import { buildTestApp, createUser, TEST_PASSWORD } from './helpers.ts';
import { freePort } from './ports.ts';
import { ROOT } from './processes.ts';

const WAIT_MS = 10_000;

async function waitUntilServing(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`demo server exited (${child.exitCode}): ${output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`demo server not serving ${url} after ${WAIT_MS} ms: ${output()}`);
}

const demoPort = await freePort();
const trustedOrigin = `http://localhost:${demoPort}`;
// Same server, another origin: the browser sees a different scheme/host/port triple.
const untrustedOrigin = `http://127.0.0.1:${demoPort}`;

const { app, db, lines } = await buildTestApp({ flags: ['-cors-trusted-origins', trustedOrigin] });
await app.listen({ port: 0, host: '127.0.0.1' });
const apiPort = (app.server.address() as { port: number }).port;
const apiUrl = `http://127.0.0.1:${apiPort}`;
// The /preflight page logs in as alice@example.com with pa55word.
await createUser(db, { email: 'alice@example.com' });
assert.equal(TEST_PASSWORD, 'pa55word');

type RequestLine = { method?: string; path?: string; status?: number };
function requestsTo(path: string, method: string): RequestLine[] {
  return (lines as RequestLine[]).filter((l) => l.path === path && l.method === method);
}

let demo: ChildProcess | undefined;
let browser: Browser | undefined;

async function output(page: Page): Promise<string> {
  await page.waitForFunction(
    "document.getElementById('output') !== null && document.getElementById('output').textContent !== 'waiting…'",
    undefined,
    { timeout: WAIT_MS },
  );
  return (await page.textContent('#output', { timeout: WAIT_MS })) ?? '';
}

async function visit(url: string): Promise<string> {
  assert.ok(browser, 'the browser was launched');
  const page = await browser.newPage();
  try {
    const res = await page.goto(url, { timeout: WAIT_MS });
    assert.equal(res?.status(), 200);
    return await output(page);
  } finally {
    await page.close();
  }
}

describe('CORS in a real browser (demo pages)', { timeout: 120_000 }, () => {
  before(async () => {
    let log = '';
    demo = spawn(
      process.execPath,
      ['bin/greenlight.js', 'demo', 'cors', '-demo-port', String(demoPort), '-demo-api', apiUrl],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    demo.stdout?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    demo.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    await waitUntilServing(`http://127.0.0.1:${demoPort}/simple`, demo, () => log);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    const child = demo;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
    }
  });

  test('when the demo page serves the API URL, then it is the listening test API', async () => {
    const res = await fetch(`http://127.0.0.1:${demoPort}/simple`);
    const html = await res.text();
    assert.ok(html.includes(`${apiUrl}/v1/healthcheck`), html);
    assert.ok(html.includes('<div id="output">'));
  });

  test('when a trusted origin makes a simple GET, then the browser lets the page read the healthcheck', async () => {
    const text = await visit(`${trustedOrigin}/simple`);
    assert.ok(!text.startsWith('error:'), text);
    const body = JSON.parse(text) as { status: string };
    assert.equal(body.status, 'available');
  });

  test('when a trusted origin makes a request needing a preflight, then the browser lets the page read the answer', async () => {
    const optionsBefore = requestsTo('/v1/tokens/authentication', 'OPTIONS').length;
    const postsBefore = requestsTo('/v1/tokens/authentication', 'POST').length;
    const text = await visit(`${trustedOrigin}/preflight`);
    assert.ok(!text.startsWith('error:'), text);
    const body = JSON.parse(text) as { authentication_token?: { token: string }; error?: unknown };
    assert.equal(typeof body.authentication_token?.token, 'string', text);
    assert.equal(body.authentication_token?.token.length, 26);
    // The browser sent the preflight first, and the API answered it 200.
    const preflights = requestsTo('/v1/tokens/authentication', 'OPTIONS').slice(optionsBefore);
    assert.ok(preflights.length >= 1, 'a preflight reached the API');
    assert.ok(preflights.every((l) => l.status === 200));
    assert.equal(requestsTo('/v1/tokens/authentication', 'POST').length, postsBefore + 1);
  });

  test('when an untrusted origin makes a simple GET, then the browser blocks the page from reading it', async () => {
    const before = requestsTo('/v1/healthcheck', 'GET').length;
    const text = await visit(`${untrustedOrigin}/simple`);
    assert.match(text, /^error:/);
    // The API did answer; it was the browser that withheld the answer.
    assert.ok(requestsTo('/v1/healthcheck', 'GET').length > before, 'the GET reached the API');
  });

  test('when an untrusted origin makes a request needing a preflight, then the browser never sends it', async () => {
    const postsBefore = requestsTo('/v1/tokens/authentication', 'POST').length;
    const text = await visit(`${untrustedOrigin}/preflight`);
    assert.match(text, /^error:/);
    // The preflight got no CORS headers, so the POST itself was never made.
    assert.equal(requestsTo('/v1/tokens/authentication', 'POST').length, postsBefore);
  });
});
