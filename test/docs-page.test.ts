// The docs page at /docs in headless Chromium (/usr/bin/chromium, Debian's package): it loads
// with no console error, lists every operation of the document, and "Try it out" reaches the
// running server, with and without a bearer token. Rate limiting stays on: the page's assets
// must not be refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.ts';
import { buildTestApp } from './helpers.ts';

const WAIT_MS = 15_000;

const { app, token } = await buildTestApp({
  flags: ['-limiter-enabled=true', '-limiter-rps', '2', '-limiter-burst', '4'],
});
await app.listen({ port: 0, host: '127.0.0.1' });
const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
const doc = app.swagger() as unknown as {
  paths: Record<string, Record<string, { operationId: string; tags: string[] }>>;
};

let browser: Browser | undefined;
const problems: string[] = [];

async function openDocs(): Promise<Page> {
  assert.ok(browser);
  const page = await browser.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
  const res = await page.goto(`${base}/docs`, { timeout: WAIT_MS });
  assert.equal(res?.status(), 200);
  await page.waitForSelector('.opblock', { timeout: WAIT_MS });
  return page;
}

// Expands an operation, presses "Try it out" and "Execute", and returns the status shown.
async function tryIt(page: Page, tag: string, operationId: string): Promise<string> {
  const block = page.locator(`#operations-${tag}-${operationId}`);
  await block.locator('.opblock-summary').click();
  await block.locator('button.try-out__btn').click();
  await block.locator('button.execute').click();
  const status = block.locator('.live-responses-table .response .response-col_status');
  await status.waitFor({ timeout: WAIT_MS });
  return (await status.textContent())?.trim() ?? '';
}

describe('the docs page in a real browser', { timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  test('when /docs loads, then there is no console error and every operation of the document is listed', async () => {
    const page = await openDocs();
    const listed = await page.$$eval('.opblock', (blocks) =>
      blocks.map((b) => {
        const method = b.querySelector('.opblock-summary-method')?.textContent?.trim().toLowerCase();
        const path = b.querySelector('.opblock-summary-path')?.getAttribute('data-path');
        return `${method} ${path}`;
      }),
    );
    const documented = Object.entries(doc.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method} ${path}`),
    );
    assert.deepEqual([...listed].sort(), [...documented].sort());
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('when "Try it out" runs the healthcheck, then the page shows the server\'s 200', async () => {
    const page = await openDocs();
    assert.equal(await tryIt(page, 'system', 'healthcheck'), '200');
    const body = await page
      .locator('#operations-system-healthcheck .live-responses-table .response-col_description pre')
      .first()
      .textContent();
    assert.match(body ?? '', /"status": "available"/);
    assert.deepEqual(problems, []);
    await page.close();
  });

  test('when a bearer token is entered under Authorize, then "Try it out" lists movies with it', async () => {
    const page = await openDocs();
    await page.locator('button.authorize').first().click();
    const bearer = page.locator('.modal-ux .auth-container').filter({ hasText: 'bearerToken' });
    await bearer.locator('input').first().fill(token);
    await bearer.locator('button.authorize').click();
    await page.locator('.modal-ux button.btn-done').first().click();
    assert.equal(await tryIt(page, 'movies', 'listMovies'), '200');
    assert.deepEqual(problems, []);
    await page.close();
  });
});
