// Unary calls in gRPC's binary protocol take a path of their own (src/grpc/unary.ts); a
// compressed call, or one in JSON, still goes through the Connect adapter. Both must answer
// alike, and every malformed body must get an error status, never a crash or a hang.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { GetMovieRequestSchema, GetMovieResponseSchema } from '../gen/greenlight/v1/movies_pb.ts';
import { GRPC_FLAGS, startGrpc } from './grpc-helpers.ts';
import { buildTestApp, createMovie, withToken } from './helpers.ts';

type Answer = { status: string; message: string; fields: Record<string, unknown>; data: Buffer };

const GET_MOVIE = '/greenlight.v1.MoviesService/GetMovie';

// One length-prefixed message (flags byte, big-endian length).
function framed(message: Uint8Array, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(compressed ? 1 : 0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function call(address: string, body: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  const session = http2.connect(`http://${address}`);
  return new Promise<Answer>((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': GET_MOVIE,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    const fields: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => Object.assign(fields, h));
    req.on('trailers', (t) => Object.assign(fields, t));
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('error', reject);
    req.on('end', () =>
      resolve({
        status: String(fields['grpc-status']),
        message: decodeURIComponent(String(fields['grpc-message'] ?? '')),
        fields,
        data: Buffer.concat(chunks),
      }),
    );
    req.end(body);
  }).finally(() => session.close());
}

const movieOf = (answer: Answer) => fromBinary(GetMovieResponseSchema, answer.data.subarray(5)).movie;

describe('unary calls', async () => {
  const { app, config, token } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const movie = await createMovie(withToken(app, token), { title: 'Unary' });
  const auth = { authorization: `Bearer ${token}` };
  const request = (id: number) =>
    toBinary(GetMovieRequestSchema, create(GetMovieRequestSchema, { id: BigInt(id) }));

  test('when the same call comes plain and gzip-compressed, then both paths answer the same movie, and the same error', async () => {
    const plain = await call(address, framed(request(movie.id)), auth);
    const gzip = await call(address, framed(gzipSync(request(movie.id)), true), {
      ...auth,
      'grpc-encoding': 'gzip',
    });
    assert.equal(plain.status, '0');
    assert.equal(gzip.status, '0');
    assert.equal(plain.fields['content-type'], 'application/grpc+proto');
    assert.deepEqual(movieOf(plain), movieOf(gzip));
    assert.equal(movieOf(plain)?.title, 'Unary');

    const missing = await call(address, framed(request(999_999)), auth);
    const missingGzip = await call(address, framed(gzipSync(request(999_999)), true), {
      ...auth,
      'grpc-encoding': 'gzip',
    });
    assert.equal(missing.status, '5');
    assert.deepEqual([missing.status, missing.message], [missingGzip.status, missingGzip.message]);
  });

  test('when a call has no credential, or a deadline, then UNAUTHENTICATED as Connect says it, and an answer within the deadline', async () => {
    const anonymous = await call(address, framed(request(movie.id)));
    assert.equal(anonymous.status, '16');
    const timed = await call(address, framed(request(movie.id)), { ...auth, 'grpc-timeout': '5S' });
    assert.equal(timed.status, '0');
  });

  test('when a client with a deadline sends only part of its message, then DEADLINE_EXCEEDED once the deadline passes', async () => {
    const session = http2.connect(`http://${address}`);
    try {
      const status = await new Promise<string>((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': GET_MOVIE,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': '200m',
          ...auth,
        });
        const fields: Record<string, unknown> = {};
        req.on('response', (h) => Object.assign(fields, h));
        req.on('trailers', (t) => Object.assign(fields, t));
        req.on('error', reject);
        req.on('end', () => resolve(String(fields['grpc-status'])));
        req.resume();
        req.write(framed(request(movie.id)).subarray(0, 3));
      });
      assert.equal(status, '4');
    } finally {
      session.destroy();
    }
  });

  test('when the body is malformed, then an error status each time, and the server goes on answering', async () => {
    const good = request(movie.id);
    const cases: [string, Buffer, string][] = [
      ['no message', Buffer.alloc(0), '3'],
      ['a cut prefix', Buffer.from([0, 0, 0]), '3'],
      ['a cut message', framed(good).subarray(0, 6), '3'],
      ['two messages', Buffer.concat([framed(good), framed(good)]), '3'],
      ['a compressed flag without grpc-encoding', framed(good, true), '13'],
      ['bytes that are no GetMovieRequest', framed(Buffer.from([0xff, 0xff, 0xff])), '3'],
    ];
    for (const [name, body, status] of cases) {
      const answer = await call(address, body, auth);
      assert.equal(answer.status, status, name);
      assert.equal(answer.data.length, 0, name);
    }
    const badDeadline = await call(address, framed(good), { ...auth, 'grpc-timeout': 'soon' });
    assert.notEqual(badDeadline.status, '0');
    assert.equal((await call(address, framed(good), auth)).status, '0');
  });
});
