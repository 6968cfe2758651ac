// GraphiQL in headless Chromium: /usr/bin/chromium (Debian package `chromium`), as for the
// CORS pages. The page must work offline: every request stays on the API's own origin.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { buildTestApp, createMovie } from './helpers.ts';

const { app, api, token } = await buildTestApp();

test('when GraphiQL runs its example query in a browser, then it is answered with no page error and no outside request', async () => {
  await createMovie(api, { title: 'Seen In GraphiQL' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
    timeout: 30_000,
  });
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('request', (r) => {
      if (!/^(blob|data):/.test(r.url()) && !r.url().startsWith(`${origin}/`))
        problems.push(`outside: ${r.url()}`);
    });
    // GraphiQL's own fetches carry the token, as a user would set it in its Headers tab.
    await page.setExtraHTTPHeaders({ authorization: `Bearer ${token}` });
    const res = await page.goto(`${origin}/graphiql`, { timeout: 10_000 });
    assert.equal(res?.status(), 200);
    // The example query (the page's default) asks for movies; its answer is what GraphiQL shows.
    const executed = page.waitForResponse(
      (r) => r.url() === `${origin}/graphql` && (r.request().postData() ?? '').includes('movies(sort'),
      { timeout: 15_000 },
    );
    await page.click('.graphiql-execute-button', { timeout: 10_000 });
    const answer = await executed;
    assert.equal(answer.status(), 200);
    const { data } = (await answer.json()) as { data: { movies: { movies: { title: string }[] } } };
    assert.deepEqual(
      data.movies.movies.map((m) => m.title),
      ['Seen In GraphiQL'],
    );
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
