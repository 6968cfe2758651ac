import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { setTimeout } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createPool } from '../src/platform/db.ts';
import { createPosters, purgePosterObjects } from '../src/posters/posters.ts';
import {
  buildTestApp,
  captureLogger,
  createMovie,
  createTestDatabase,
  createUser,
  type TestApp,
  withToken,
} from './helpers.ts';
import { freePort } from './ports.ts';
import { startServer } from './processes.ts';

const MiB = 1024 * 1024;
const BUCKET = 'posters';
const S3_KEYS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const scratch = mkdtempSync(join(tmpdir(), 'greenlight-posters-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

// s3rver in a process of its own: the memory test measures this process, not the store.
const S3RVER = fileURLToPath(import.meta.resolve('s3rver/bin/s3rver.js'));
const s3Directory = join(scratch, 's3');
const s3Port = await freePort();
const s3Endpoint = `http://127.0.0.1:${s3Port}`;

async function startS3rver(): Promise<ChildProcess> {
  const args = ['-d', s3Directory, '-a', '127.0.0.1', '-p', String(s3Port), '--silent'];
  const child = spawn(process.execPath, [S3RVER, ...args, '--configure-bucket', BUCKET], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await fetch(`${s3Endpoint}/`);
      return child;
    } catch (err) {
      if (Date.now() > deadline) throw new Error('s3rver did not start', { cause: err });
      await setTimeout(50);
    }
  }
}

async function stopS3rver(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill();
  await exited;
}

let s3rver = await startS3rver();
after(() => stopS3rver(s3rver));
const s3 = new S3Client({
  endpoint: s3Endpoint,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: S3_KEYS,
});
after(() => s3.destroy());

const png = (bytes = 2048) =>
  Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.alloc(bytes - 8, 'png-body'),
  ]);
const jpeg = (bytes = 3000) =>
  Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(bytes - 4, 'jpeg-body')]);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

type Storage = {
  name: string;
  flags: string[];
  // the stored objects' keys under `prefix`
  objects: (prefix: string) => Promise<string[]>;
  read: (key: string) => Promise<Buffer>;
  // upload leftovers: temp files, for the local store
  partials: () => string[];
  // bytes the store holds on disk, finished or not
  stored: () => number;
};

const bytesUnder = (dir: string) =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .reduce((sum, entry) => sum + statSync(join(entry.parentPath, entry.name)).size, 0);

function localStorage(): Storage {
  const dataDir = join(scratch, 'local');
  const root = join(dataDir, 'posters');
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1));
    } catch {
      return [];
    }
  };
  return {
    name: 'local disk',
    flags: ['-data-dir', dataDir],
    objects: async (prefix) => list(join(root, prefix)),
    read: async (key) => readFileSync(join(root, key)),
    partials: () => list(join(root, '.tmp')),
    stored: () => bytesUnder(root),
  };
}

function s3Storage(): Storage {
  return {
    name: 'S3 (s3rver)',
    flags: [
      '-s3-endpoint',
      s3Endpoint,
      '-s3-bucket',
      BUCKET,
      '-s3-force-path-style',
      '-s3-access-key-id',
      S3_KEYS.accessKeyId,
      '-s3-secret-access-key',
      S3_KEYS.secretAccessKey,
    ],
    objects: async (prefix) => {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
      return (listed.Contents ?? []).map((object) => object.Key as string);
    },
    read: async (key) => {
      const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return Buffer.from(
        await (object.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray(),
      );
    },
    partials: () => [],
    stored: () => bytesUnder(s3Directory),
  };
}

async function listen(t: TestApp): Promise<string> {
  if (!t.app.server.listening) await t.app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
}

// `count` bytes of a poster, made a chunk at a time so the test holds none of it whole;
// with `pause`, nothing more is sent after `pauseAt` bytes until `released`.
function streamedPoster(
  count: number,
  digest: { hex?: string },
  pause?: { pauseAt: number; released: Promise<void> },
): Readable {
  const chunk = Buffer.alloc(64 * 1024, 'streamed-poster');
  async function* chunks() {
    const hash = createHash('sha256');
    for (let sent = 0; sent < count; sent += chunk.length) {
      if (sent === pause?.pauseAt) await pause.released;
      const part = Buffer.from(chunk.subarray(0, Math.min(chunk.length, count - sent)));
      if (sent === 0) png(8).copy(part);
      hash.update(part);
      yield part;
    }
    digest.hex = hash.digest('hex');
  }
  return Readable.from(chunks());
}

// A PUT whose body is written as the socket takes it (node:http's backpressure; fetch reads
// a web stream ahead of the socket, into memory).
function putStream(url: string, token: string, body: Readable): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    // An answer before the end (413) may end the upload early.
    pipeline(body, req).catch(() => {});
  });
}

const pendingDeletions = async (t: TestApp) =>
  (await t.db.query<{ storage_key: string }>('SELECT storage_key FROM poster_deletions')).rows;
const posterRow = async (t: TestApp, movieId: number) =>
  (await t.db.query('SELECT * FROM movie_posters WHERE movie_id = $1', [movieId])).rows[0];

for (const storage of [localStorage(), s3Storage()]) {
  describe(`posters on ${storage.name}`, async () => {
    const t = await buildTestApp({ flags: [...storage.flags, '-poster-max-bytes', String(MiB)] });
    const { api } = t;
    const put = (id: number, body: Buffer) =>
      api({ method: 'PUT', url: `/v1/movies/${id}/poster`, payload: body });
    const keysOf = (id: number) => storage.objects(`movies/${id}/`);

    test('when a PNG is uploaded, then its metadata is answered and stored, and GET streams it back with its validators', async () => {
      const movie = await createMovie(api);
      const image = png();
      const res = await put(movie.id, image);
      assert.equal(res.statusCode, 200, res.body);
      const { poster } = res.json();
      assert.equal(poster.movie_id, movie.id);
      assert.equal(poster.content_type, 'image/png');
      assert.equal(poster.size, image.length);
      assert.equal(poster.etag, sha256(image));
      const row = await posterRow(t, movie.id);
      assert.equal(row.etag, sha256(image));
      assert.equal(new Date(poster.updated_at).getTime(), row.updated_at.getTime());
      const [key] = await keysOf(movie.id);
      assert.equal(key, row.storage_key);
      assert.deepEqual(await storage.read(key as string), image);

      const got = await api(`/v1/movies/${movie.id}/poster`);
      assert.equal(got.statusCode, 200);
      assert.deepEqual(got.rawPayload, image);
      assert.equal(got.headers['content-type'], 'image/png');
      assert.equal(got.headers['content-length'], String(image.length));
      assert.equal(got.headers['accept-ranges'], 'bytes');
      assert.equal(got.headers['x-content-type-options'], 'nosniff');
      assert.equal(got.headers.etag, `"${sha256(image)}"`);
      assert.equal(got.headers['last-modified'], new Date(row.updated_at).toUTCString());
      assert.deepEqual(await pendingDeletions(t), []);
    });

    test('when a JPEG replaces a PNG, then the JPEG is served and the PNG object is removed', async () => {
      const movie = await createMovie(api);
      assert.equal((await put(movie.id, png())).statusCode, 200);
      const [old] = await keysOf(movie.id);
      const image = jpeg();
      const res = await put(movie.id, image);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().poster.content_type, 'image/jpeg');
      const keys = await keysOf(movie.id);
      assert.equal(keys.length, 1);
      assert.notEqual(keys[0], old);
      const got = await api(`/v1/movies/${movie.id}/poster`);
      assert.equal(got.headers['content-type'], 'image/jpeg');
      assert.deepEqual(got.rawPayload, image);
      assert.deepEqual(await pendingDeletions(t), []);
    });

    test('when the bytes are not an image of an accepted type, then 415 and nothing is stored', async () => {
      const movie = await createMovie(api);
      for (const body of [Buffer.from('%PDF-1.7 not a poster at all'), Buffer.from('GIF8')]) {
        const res = await put(movie.id, body);
        assert.equal(res.statusCode, 415);
        assert.deepEqual(res.json(), { error: 'body must be a JPEG, PNG, WebP or GIF image' });
      }
      const empty = await put(movie.id, Buffer.alloc(0));
      assert.equal(empty.statusCode, 400);
      assert.deepEqual(empty.json(), { error: 'body must not be empty' });
      for (const head of ['GIF89a', 'RIFF\x00\x00\x00\x00WEBPVP8 ']) {
        const res = await put(movie.id, Buffer.from(`${head}${'x'.repeat(100)}`, 'latin1'));
        assert.equal(res.statusCode, 200, head);
      }
      assert.equal((await posterRow(t, movie.id))?.content_type, 'image/webp');
      assert.equal((await keysOf(movie.id)).length, 1);
      assert.deepEqual(await pendingDeletions(t), []);
    });

    test('when a poster is over -poster-max-bytes, declared or streamed, then 413 and nothing is stored', async () => {
      const movie = await createMovie(api);
      const declared = await put(movie.id, png(MiB + 1));
      assert.equal(declared.statusCode, 413);
      assert.deepEqual(declared.json(), { error: `body must not be larger than ${MiB} bytes` });
      const base = await listen(t);
      const streamed = await putStream(
        `${base}/v1/movies/${movie.id}/poster`,
        t.token,
        streamedPoster(3 * MiB, {}),
      );
      assert.equal(streamed.status, 413);
      assert.deepEqual(streamed.json, { error: `body must not be larger than ${MiB} bytes` });
      assert.equal(await posterRow(t, movie.id), undefined);
      assert.deepEqual(await keysOf(movie.id), []);
      assert.deepEqual(storage.partials(), []);
      assert.deepEqual(await pendingDeletions(t), []);
    });

    test('when ranges are asked for, then one satisfiable range is 206, an unsatisfiable one 416, and a stale If-Range the whole poster', async () => {
      const movie = await createMovie(api);
      const image = png(1000);
      const etag = (await put(movie.id, image)).json().poster.etag;
      const get = (headers: Record<string, string>) => api({ url: `/v1/movies/${movie.id}/poster`, headers });
      for (const [range, start, end] of [
        ['bytes=0-9', 0, 9],
        ['bytes=990-', 990, 999],
        ['bytes=-5', 995, 999],
        ['bytes=500-5000', 500, 999],
      ] as const) {
        const res = await get({ range });
        assert.equal(res.statusCode, 206, range);
        assert.equal(res.headers['content-range'], `bytes ${start}-${end}/1000`);
        assert.equal(res.headers['content-length'], String(end - start + 1));
        assert.deepEqual(res.rawPayload, image.subarray(start, end + 1));
      }
      const unsatisfiable = await get({ range: 'bytes=1000-' });
      assert.equal(unsatisfiable.statusCode, 416);
      assert.equal(unsatisfiable.headers['content-range'], 'bytes */1000');
      assert.deepEqual(unsatisfiable.json(), { error: 'the requested range is not satisfiable' });
      const ignored: Record<string, string>[] = [
        { range: 'bytes=0-1,5-6' },
        { range: 'lines=1-2' },
        { range: 'bytes=0-9', 'if-range': '"stale"' },
      ];
      for (const headers of ignored) {
        const res = await get(headers);
        assert.equal(res.statusCode, 200, JSON.stringify(headers));
        assert.equal(res.rawPayload.length, 1000);
      }
      const current = await get({ range: 'bytes=0-9', 'if-range': `"${etag}"` });
      assert.equal(current.statusCode, 206);
    });

    test('when the client has the current poster, then If-None-Match and If-Modified-Since answer 304', async () => {
      const movie = await createMovie(api);
      const etag = (await put(movie.id, png())).json().poster.etag;
      const get = (headers: Record<string, string>) => api({ url: `/v1/movies/${movie.id}/poster`, headers });
      const fresh = await get({ 'if-none-match': `"other", "${etag}"` });
      assert.equal(fresh.statusCode, 304);
      assert.equal(fresh.rawPayload.length, 0);
      assert.equal(fresh.headers.etag, `"${etag}"`);
      assert.equal((await get({ 'if-none-match': '"other"' })).statusCode, 200);
      const lastModified = fresh.headers['last-modified'] as string;
      assert.equal((await get({ 'if-modified-since': lastModified })).statusCode, 304);
      assert.equal((await get({ 'if-modified-since': 'Sat, 01 Jan 2000 00:00:00 GMT' })).statusCode, 200);
      // If-None-Match wins over If-Modified-Since.
      const both = await get({ 'if-none-match': '"other"', 'if-modified-since': lastModified });
      assert.equal(both.statusCode, 200);
    });

    test('when a poster is deleted, then 200, its object is gone, and a second delete is 404', async () => {
      const movie = await createMovie(api);
      await put(movie.id, png());
      const res = await api({ method: 'DELETE', url: `/v1/movies/${movie.id}/poster` });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { message: 'poster successfully deleted' });
      assert.deepEqual(await keysOf(movie.id), []);
      assert.deepEqual(await pendingDeletions(t), []);
      assert.equal((await api(`/v1/movies/${movie.id}/poster`)).statusCode, 404);
      assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${movie.id}/poster` })).statusCode, 404);
    });

    test("when a movie is deleted, through REST or GraphQL, then its poster's row and object go with it", async () => {
      const viaRest = await createMovie(api);
      const viaGraphql = await createMovie(api);
      for (const movie of [viaRest, viaGraphql]) {
        await put(movie.id, png());
        assert.equal((await keysOf(movie.id)).length, 1);
      }
      assert.equal((await api({ method: 'DELETE', url: `/v1/movies/${viaRest.id}` })).statusCode, 200);
      const mutation = await api({
        method: 'POST',
        url: '/graphql',
        payload: { query: `mutation { deleteMovie(id: "${viaGraphql.id}") }` },
      });
      assert.deepEqual(mutation.json(), { data: { deleteMovie: String(viaGraphql.id) } });
      for (const movie of [viaRest, viaGraphql]) {
        assert.equal(await posterRow(t, movie.id), undefined);
        assert.deepEqual(await keysOf(movie.id), []);
      }
      assert.deepEqual(await pendingDeletions(t), []);
    });

    test('when the client hangs up in the middle of the body, then nothing is stored and it is logged as its doing, not a server fault', async () => {
      const movie = await createMovie(api);
      const base = await listen(t);
      const { port } = new URL(base);
      const socket = connect(Number(port), '127.0.0.1');
      await once(socket, 'connect');
      socket.write(
        `PUT /v1/movies/${movie.id}/poster HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.token}\r\nContent-Length: 500000\r\n\r\n`,
      );
      socket.write(png(100_000));
      await setTimeout(100);
      socket.destroy();
      const deadline = Date.now() + 5_000;
      while (!t.lines.some((l) => l.msg === 'client aborted its body')) {
        assert.ok(Date.now() < deadline, 'the abort is logged');
        await setTimeout(25);
      }
      assert.ok(!t.lines.some((l) => l.msg === 'request failed'), 'no server fault logged');
      assert.equal(await posterRow(t, movie.id), undefined);
      assert.deepEqual(await keysOf(movie.id), []);
    });

    test('when the caller lacks a token, the permission or the movie, then 401, 403 or 404', async () => {
      const movie = await createMovie(api);
      const url = `/v1/movies/${movie.id}/poster`;
      assert.equal((await t.app.inject({ method: 'PUT', url, payload: png() })).statusCode, 401);
      assert.equal((await t.app.inject({ url })).statusCode, 401);
      const reader = withToken(t.app, (await createUser(t.db, { permissions: ['movies:read'] })).token);
      const nobody = withToken(t.app, (await createUser(t.db)).token);
      assert.equal((await reader({ method: 'PUT', url, payload: png() })).statusCode, 403);
      assert.equal((await reader({ method: 'DELETE', url })).statusCode, 403);
      assert.equal((await nobody({ url })).statusCode, 403);
      assert.deepEqual(await keysOf(movie.id), []);
      assert.equal((await put(999_999_999, png())).statusCode, 404);
      assert.equal((await api('/v1/movies/999999999/poster')).statusCode, 404);
      assert.equal((await api(url)).statusCode, 404);
      assert.deepEqual(await storage.objects('movies/999999999/'), []);
    });

    test('when a large poster is uploaded, then its bytes reach the store while the client is still sending, and it is stored whole', async () => {
      // 100 MiB to local disk; 20 MiB (four multipart parts) to s3rver, which is slower.
      const size = storage.name === 'local disk' ? 100 * MiB : 20 * MiB;
      const big = await buildTestApp({
        dsn: t.dsn,
        flags: [...storage.flags, '-poster-max-bytes', String(size)],
      });
      const movie = await createMovie(big.api);
      const base = await listen(big);
      const digest: { hex?: string } = {};
      let release = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const before = storage.stored();
      const upload = putStream(
        `${base}/v1/movies/${movie.id}/poster`,
        big.token,
        streamedPoster(size, digest, { pauseAt: 12 * MiB, released }),
      );
      // The client has sent 12 MiB and waits: a server holding the body until its end would
      // have stored nothing yet; this one has written at least a part (5 MiB).
      const deadline = Date.now() + 15_000;
      while (storage.stored() - before < 5 * MiB) {
        assert.ok(Date.now() < deadline, `${storage.stored() - before} bytes stored while the client waits`);
        await setTimeout(50);
      }
      release();
      const res = await upload;
      const body = res.json as { poster?: { size: number; etag: string } };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.poster?.size, size);
      assert.equal(body.poster?.etag, digest.hex);
      const ranged = await fetch(`${base}/v1/movies/${movie.id}/poster`, {
        headers: { authorization: `Bearer ${big.token}`, range: `bytes=${size - 4}-` },
      });
      assert.equal(ranged.status, 206);
      assert.equal((await ranged.arrayBuffer()).byteLength, 4);
    });
  });
}

describe('poster objects whose deletion fails', async () => {
  const t = await buildTestApp({ flags: s3Storage().flags });

  test('when the store is down as a movie is deleted, then the deletion succeeds, the object is recorded, and a later purge removes it', async () => {
    const movie = await createMovie(t.api);
    const put = await t.api({ method: 'PUT', url: `/v1/movies/${movie.id}/poster`, payload: jpeg() });
    assert.equal(put.statusCode, 200);
    const key = (await posterRow(t, movie.id)).storage_key as string;
    await stopS3rver(s3rver);
    try {
      const res = await t.api({ method: 'DELETE', url: `/v1/movies/${movie.id}` });
      assert.equal(res.statusCode, 200, res.body);
      const [recorded] = (await t.db.query('SELECT storage_key, attempts, last_error FROM poster_deletions'))
        .rows;
      assert.equal(recorded.storage_key, key);
      assert.equal(recorded.attempts, 1);
      assert.ok(recorded.last_error);
      assert.ok(t.lines.some((line) => line.msg === 'poster object not deleted; retried later'));
    } finally {
      s3rver = await startS3rver();
    }
    assert.deepEqual(await s3Storage().objects(key), [key]);
    await t.db.query('UPDATE poster_deletions SET next_attempt_at = now()');
    const posters = createPosters(t.db, t.config.posters, captureLogger().logger);
    assert.equal(await purgePosterObjects(posters), 1);
    posters.storage.close();
    assert.deepEqual(await s3Storage().objects(key), []);
    assert.deepEqual(await pendingDeletions(t), []);
  });
});

// The service's own process, apart from the test's: its resident memory is what a 100 MiB
// upload must not grow by anything like 100 MiB. A first, smaller upload warms it up (code
// compiled, V8's young generation and the allocator's arenas at their working size), so
// what is measured is what an upload costs, not what a fresh process grows to anyway; a
// server that held bodies would already grow by the 60 MiB more that the measured one sends.
describe('memory of a poster upload', async () => {
  test('when 100 MiB are uploaded to a running server, then its peak resident memory grows by far less than the upload', async (t) => {
    const dsn = await createTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'greenlight-posters-rss-'));
    after(() => rmSync(dataDir, { recursive: true, force: true }));
    const server = await startServer(t, [
      '-db-dsn',
      dsn,
      '-data-dir',
      dataDir,
      '-poster-max-bytes',
      String(100 * MiB),
    ]);
    const db = createPool({ dsn, maxOpenConns: 1, maxIdleTimeMs: 1000, queryTimeoutMs: 5000 });
    after(() => db.end());
    const { token } = await createUser(db, { permissions: ['movies:read', 'movies:write'] });
    const base = `http://127.0.0.1:${server.port}`;
    const movie = (await (
      await fetch(`${base}/v1/movies`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ title: 'Big', year: 2020, runtime: '90 mins', genres: ['drama'] }),
      })
    ).json()) as { movie: { id: number } };
    const url = `${base}/v1/movies/${movie.movie.id}/poster`;
    const peak = () => {
      const line = readFileSync(`/proc/${server.child.pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
      return Number(line?.[1]) * 1024;
    };

    assert.equal((await putStream(url, token, streamedPoster(40 * MiB, {}))).status, 200);
    const before = peak();
    const digest: { hex?: string } = {};
    const res = await putStream(url, token, streamedPoster(100 * MiB, digest));
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal((res.json as { poster: { etag: string } }).poster.etag, digest.hex);
    const grown = peak() - before;
    t.diagnostic(`peak RSS grew by ${(grown / MiB).toFixed(1)} MiB over the 100 MiB upload`);
    // Measured 25-29 MiB: the network's chunks, garbage as soon as they are written, wait for
    // V8's next collection, which its external-memory accounting triggers only after tens of
    // MiB. A server holding the body would grow by the upload's 100 MiB.
    assert.ok(grown < 48 * MiB, `peak RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  });
});
