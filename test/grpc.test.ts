// The gRPC listener in-process: every RPC of MoviesService and ProductsService through the
// independent client (grpc-js, the .proto read at run time) and the generated Connect client
// over gRPC, gRPC-Web and Connect; the REST messages on every error; auth as metadata.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Code, ConnectError } from '@connectrpc/connect';
import { BadRequestSchema } from '../gen/google/rpc/error_details_pb.ts';
import { MoviesService } from '../gen/greenlight/v1/movies_pb.ts';
import { ProductsService } from '../gen/greenlight/v1/products_pb.ts';
import { createApiKey } from '../src/auth/apikey.ts';
import {
  connectClient,
  GRPC_FLAGS,
  grpc,
  grpcJsClient,
  grpcJsError,
  PROTOCOLS,
  startGrpc,
} from './grpc-helpers.ts';
import { buildTestApp, createMovie, createUser, withToken } from './helpers.ts';

const { status } = grpc;

describe('MoviesService through grpc-js', async () => {
  const { app, db, config, token } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', token).call;

  test('when a movie is created, read, listed, updated with its version and deleted, then each answer is the REST one', async () => {
    const created = await movies.CreateMovie({
      title: 'Arrival gRPC',
      year: 2016,
      runtimeMinutes: 116,
      genres: ['drama', 'sci-fi'],
    });
    const movie = created.movie;
    assert.equal(movie.title, 'Arrival gRPC');
    assert.equal(movie.runtimeMinutes, 116);
    assert.equal(movie.version, 1);
    const rest = await withToken(app, token)(`/v1/movies/${movie.id}`);
    assert.equal(rest.json().movie.runtime, '116 mins');

    assert.deepEqual((await movies.GetMovie({ id: movie.id })).movie, movie);
    const list = await movies.ListMovies({ title: 'arrival grpc', genres: ['sci-fi'], sort: '-year' });
    assert.deepEqual(
      list.movies.map((m: { id: string }) => m.id),
      [movie.id],
    );
    assert.equal(list.metadata.totalRecords, '1');

    const updated = await movies.UpdateMovie({ id: movie.id, year: 2017, expectedVersion: 1 });
    assert.equal(updated.movie.year, 2017);
    assert.equal(updated.movie.version, 2);
    const stale = await grpcJsError(movies.UpdateMovie({ id: movie.id, year: 2018, expectedVersion: 1 }));
    assert.equal(stale.code, status.FAILED_PRECONDITION);
    assert.equal(stale.details, 'unable to update the record due to an edit conflict, please try again');

    assert.deepEqual(await movies.DeleteMovie({ id: movie.id }), {});
    const gone = await grpcJsError(movies.GetMovie({ id: movie.id }));
    assert.equal(gone.code, status.NOT_FOUND);
    assert.equal(gone.details, 'the requested resource could not be found');
    const row = await db.query('SELECT count(*) FROM movies WHERE id = $1', [movie.id]);
    assert.equal(row.rows[0].count, 0);
  });

  test('when the list asks for an unknown sort or too large a page, then INVALID_ARGUMENT names the fields as REST does', async () => {
    const err = await grpcJsError(movies.ListMovies({ sort: 'rating', pageSize: 101 }));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    const rest = await withToken(app, token)('/v1/movies?sort=rating&page_size=101');
    const fields = rest.json().error as Record<string, string>;
    assert.equal(
      err.details,
      Object.entries(fields)
        .map(([field, message]) => `${field}: ${message}`)
        .join('; '),
    );
  });

  test('when an id names no movie (0, beyond any), then NOT_FOUND', async () => {
    for (const id of ['0', '9223372036854775807']) {
      assert.equal((await grpcJsError(movies.GetMovie({ id }))).code, status.NOT_FOUND);
    }
  });
});

describe('the generated client over gRPC, gRPC-Web and Connect', async () => {
  const { app, config, token } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const movie = await createMovie(withToken(app, token), { title: 'Three Protocols' });

  for (const protocol of PROTOCOLS) {
    test(`when ${protocol} reads a movie and creates an invalid one, then it gets the movie, and INVALID_ARGUMENT with field violations`, async () => {
      const client = connectClient(MoviesService, address, protocol, token);
      const { movie: read } = await client.getMovie({ id: BigInt(movie.id) });
      assert.equal(read?.title, 'Three Protocols');
      const err = await client.createMovie({ title: '' }).then(
        () => assert.fail('created'),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.InvalidArgument);
      const [badRequest] = err.findDetails(BadRequestSchema);
      const violations = Object.fromEntries(
        (badRequest?.fieldViolations ?? []).map((v) => [v.field, v.description]),
      );
      const rest = await withToken(app, token)({ method: 'POST', url: '/v1/movies', payload: { title: '' } });
      assert.deepEqual(violations, rest.json().error);
    });
  }
});

describe('credentials as metadata', async () => {
  const { app, db, config } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const reader = await createUser(db, { permissions: ['movies:read'] });
  const inactive = await createUser(db, { activated: false, permissions: ['movies:read'] });

  test('when the token is missing, unknown, inactive or lacks the permission, then the REST refusal comes as its status', async () => {
    const cases: [string | undefined, number, string][] = [
      [undefined, status.UNAUTHENTICATED, 'you must be authenticated to access this resource'],
      ['A'.repeat(26), status.UNAUTHENTICATED, 'invalid or missing authentication token'],
      [
        inactive.token,
        status.PERMISSION_DENIED,
        'your user account must be activated to access this resource',
      ],
    ];
    for (const [token, code, message] of cases) {
      const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', token).call;
      const err = await grpcJsError(movies.ListMovies({}));
      assert.deepEqual([err.code, err.details], [code, message], String(token));
    }
    const movies = grpcJsClient(address, 'greenlight.v1.MoviesService', reader.token).call;
    const err = await grpcJsError(movies.CreateMovie({ title: 'No' }));
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.equal(
      err.details,
      "your user account doesn't have the necessary permissions to access this resource",
    );
  });

  test('when a JWT is used, then logged out everywhere over REST, then its next call is UNAUTHENTICATED', async () => {
    const user = await createUser(db);
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: user.email, password: 'pa55word' },
    });
    const jwt = login.json().access_token as string;
    const products = grpcJsClient(address, 'greenlight.v1.ProductsService', jwt).call;
    await products.ListProducts({});
    const out = await withToken(app, jwt)({ method: 'POST', url: '/api/v1/auth/logout-all' });
    assert.equal(out.statusCode, 204, out.body);
    const err = await grpcJsError(products.ListProducts({}));
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.equal(err.details, 'auth: invalid token');
  });

  test('when an API key has only products:read, then it may list products but not create one', async () => {
    const user = await createUser(db);
    const { plaintext } = await createApiKey(
      db,
      { id: user.id, tokenGeneration: 0 },
      { name: 'ci', scopes: ['products:read'], expiresAt: null },
      {},
    );
    const products = connectClient(ProductsService, address, 'grpc', plaintext);
    await products.listProducts({});
    const err = await products.createProduct({ name: 'Key' }).then(
      () => assert.fail('created'),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.PermissionDenied);
    assert.equal(err.rawMessage, 'you do not have permission to perform this action');
  });
});

describe('a product price over gRPC', async () => {
  const { app, db, config } = await buildTestApp({ flags: GRPC_FLAGS });
  const address = await startGrpc(app, config);
  const seller = await createUser(db);
  const { plaintext } = await createApiKey(
    db,
    { id: seller.id, tokenGeneration: 0 },
    { name: 'ci', scopes: ['products:read', 'products:write'], expiresAt: null },
    {},
  );

  test('when a price is NaN (which a protobuf double carries and JSON cannot), then INVALID_ARGUMENT, and REST still reads the products', async () => {
    const products = connectClient(ProductsService, address, 'grpc', plaintext);
    const refused = (call: Promise<unknown>) =>
      call.then(
        () => assert.fail('accepted'),
        (e: unknown) => ConnectError.from(e),
      );
    const created = await refused(products.createProduct({ name: 'Lamp', price: Number.NaN, stock: 1 }));
    assert.deepEqual(
      [created.code, created.rawMessage],
      [Code.InvalidArgument, 'validation: price must be a number'],
    );
    const { product } = await products.createProduct({ name: 'Lamp', price: 10, stock: 1 });
    const updated = await refused(products.updateProduct({ id: product?.id ?? 0n, price: Number.NaN }));
    assert.deepEqual(
      [updated.code, updated.rawMessage],
      [Code.InvalidArgument, 'validation: price must be a number'],
    );
    const list = await app.inject({
      method: 'GET',
      url: '/api/v1/products',
      headers: { 'x-api-key': plaintext },
    });
    assert.equal(list.statusCode, 200, list.body);
    assert.deepEqual(
      list.json().data.map((p: { price: number }) => p.price),
      [10],
    );
  });
});
