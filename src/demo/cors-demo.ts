// `greenlight demo cors`: the book's two CORS demo pages, served from another origin than
// the API so a browser applies CORS: /simple makes a simple GET, /preflight a request that
// needs a preflight (POST with Content-Type: application/json).
import { createServer } from 'node:http';
import type { Logger } from '../platform/logger.ts';

function page(title: string, script: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>${title}</title></head>
<body>
  <h1>${title}</h1>
  <div id="output">waiting…</div>
  <script>
    ${script}
  </script>
</body>
</html>
`;
}

function pages(api: string): Record<string, string> {
  const show = `
      .then((response) => response.text())
      .then((text) => { document.getElementById('output').textContent = text; })
      .catch((err) => { document.getElementById('output').textContent = 'error: ' + err; });`;
  return {
    '/simple': page('Simple CORS', `fetch(${JSON.stringify(`${api}/v1/healthcheck`)})${show}`),
    '/preflight': page(
      'Preflight CORS',
      `fetch(${JSON.stringify(`${api}/v1/tokens/authentication`)}, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: 'alice@example.com', password: 'pa55word' }),
      })${show}`,
    ),
  };
}

export function serveCorsDemo(port: number, api: string, logger: Logger): Promise<void> {
  const content = pages(api.replace(/\/$/, ''));
  const server = createServer((request, response) => {
    const html = content[request.url ?? ''];
    if (html === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('try /simple or /preflight\n');
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      logger.info({ port, api, pages: Object.keys(content) }, 'serving CORS demo pages');
      const stop = () => server.close(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      resolve();
    });
  });
}
