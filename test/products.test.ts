// Seed 002's products API on /api/v1: its envelope, statuses and messages, ownership in SQL,
// and one identity store shared with the book's /v1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { buildTestApp, createUser, TEST_PASSWORD } from './helpers.ts';

const { app, db } = await buildTestApp();

type Res = Awaited<ReturnType<typeof app.inject>>;

function call(
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT',
  url: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
) {
  return app.inject({
    method,
    url,
    headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers },
    ...(options.body === undefined
      ? {}
      : { payload: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
  });
}

function expectError(res: Res, code: number, message: string): void {
  assert.equal(res.statusCode, code, res.body);
  assert.deepEqual(res.json(), { code, message });
}

// A user made in the database (cheap bcrypt) and logged in through the seed's login.
async function member(options: { permissions?: string[] } = {}) {
  const user = await createUser(db, options);
  const res = await call('POST', '/api/v1/auth/login', {
    body: { email: user.email, password: TEST_PASSWORD },
  });
  assert.equal(res.statusCode, 200, res.body);
  return { ...user, jwt: res.json().access_token as string, bookToken: user.token };
}

async function newProduct(jwt: string, fields: Record<string, unknown> = {}) {
  const res = await call('POST', '/api/v1/products', {
    token: jwt,
    body: { name: 'Keyboard', description: 'TKL', price: 149.99, stock: 42, ...fields },
  });
  assert.equal(res.statusCode, 201, res.body);
  return res.json() as { id: number; user_id: number; name: string; price: number; stock: number };
}

async function productRow(id: number) {
  const { rows } = await db.query(
    'SELECT name, description, price::text, stock FROM products WHERE id = $1',
    [id],
  );
  return rows[0];
}

describe('registration and login', () => {
  test('when a user registers, then 201 with a bearer JWT and the user, stored as an unactivated book user', async () => {
    const res = await call('POST', '/api/v1/auth/register', {
      body: { email: '  Dev@Example.com ', password: 'securepassword123' },
    });
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json();
    assert.equal(body.token_type, 'Bearer');
    assert.match(body.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.deepEqual(Object.keys(body.user), ['id', 'email', 'role', 'created_at']);
    assert.equal(body.user.email, 'dev@example.com');
    assert.equal(body.user.role, 'user');
    const { rows } = await db.query('SELECT name, activated, role FROM users WHERE id = $1', [body.user.id]);
    assert.deepEqual(rows[0], { name: 'dev', activated: false, role: 'user' });

    // One identity store: the same account logs in on the book's API, and its JWT works
    // there, with the book's activation rule.
    const book = await call('POST', '/v1/tokens/authentication', {
      body: { email: 'dev@example.com', password: 'securepassword123' },
    });
    assert.equal(book.statusCode, 201, book.body);
    const movies = await call('GET', '/v1/movies', { token: body.access_token });
    assert.equal(movies.statusCode, 403);
    assert.deepEqual(movies.json(), { error: 'your user account must be activated to access this resource' });

    const again = await call('POST', '/api/v1/auth/register', {
      body: { email: 'DEV@example.com', password: 'securepassword123' },
    });
    expectError(again, 422, 'validation: a user with this email already exists');
  });

  test('when the registration breaks a rule, then 422 with the seed message', async () => {
    const cases: Array<[unknown, string]> = [
      [{ email: 'nope', password: 'securepassword123' }, 'validation: a valid email address is required'],
      [{ password: 'securepassword123' }, 'validation: a valid email address is required'],
      [
        { email: 'a@example.com', password: 'short' },
        'validation: password must be at least 8 characters long',
      ],
      [
        { email: 'a@example.com', password: 'x'.repeat(73) },
        'validation: password must not be more than 72 bytes long',
      ],
      [
        { email: 'a\u0000b@example.com', password: 'securepassword123' },
        'validation: email must not contain a NUL character',
      ],
    ];
    for (const [body, message] of cases)
      expectError(await call('POST', '/api/v1/auth/register', { body }), 422, message);
  });

  test("when the body is not the JSON asked for, then 400 with encoding/json's reason", async () => {
    const cases: Array<[string, string]> = [
      ['', 'invalid request body: EOF'],
      ['{"email": "a@b.c"', 'invalid request body: unexpected EOF'],
      [
        '{"email": 5}',
        'invalid request body: json: cannot unmarshal number 5 into Go struct field RegisterRequest.email of type string',
      ],
      [
        '[]',
        'invalid request body: json: cannot unmarshal array into Go value of type model.RegisterRequest',
      ],
    ];
    for (const [body, message] of cases)
      expectError(await call('POST', '/api/v1/auth/register', { body }), 400, message);
    expectError(
      await call('POST', '/api/v1/auth/login', { body: '{"password": true}' }),
      400,
      'invalid request body: json: cannot unmarshal bool into Go struct field LoginRequest.password of type string',
    );
  });

  test('when the e-mail is unknown or the password wrong, then the same 401', async () => {
    const user = await createUser(db);
    expectError(
      await call('POST', '/api/v1/auth/login', { body: { email: user.email, password: 'wrong-password' } }),
      401,
      'auth: invalid email or password',
    );
    expectError(
      await call('POST', '/api/v1/auth/login', {
        body: { email: 'nobody@example.com', password: 'pa55word' },
      }),
      401,
      'auth: invalid email or password',
    );
    expectError(
      await call('POST', '/api/v1/auth/login', { body: { email: user.email, password: 'x'.repeat(100) } }),
      401,
      'auth: invalid email or password',
    );
    // like the seed's public handlers, login ignores whatever Authorization comes along
    const stale = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { authorization: 'Bearer expired.or.garbage' },
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    assert.equal(stale.statusCode, 200, stale.body);
    // a book user logs in here with any letter case and spaces around the e-mail
    const ok = await call('POST', '/api/v1/auth/login', {
      body: { email: ` ${user.email.toUpperCase()} `, password: TEST_PASSWORD },
    });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().user.id, user.id);
  });
});

describe('authentication errors in the seed envelope', () => {
  test("when the credential is missing, malformed or invalid, then the seed statuses and messages, and /v1 keeps the book's", async () => {
    expectError(await call('GET', '/api/v1/products'), 401, 'authorization header is required');
    expectError(
      await call('GET', '/api/v1/products', { headers: { authorization: 'Basic abc' } }),
      401,
      'authorization header format must be: Bearer {token}',
    );
    expectError(await call('GET', '/api/v1/products', { token: 'not-a-token' }), 401, 'auth: invalid token');
    // the root hook's error on an unknown path inside the prefix is the seed's too
    expectError(await call('GET', '/api/v1/nothing', { token: 'not-a-token' }), 401, 'auth: invalid token');
    expectError(await call('GET', '/api/v1/nothing'), 404, '404 page not found');
    const wrongMethod = await call('PUT', '/api/v1/products');
    expectError(wrongMethod, 405, 'method not allowed');
    assert.equal(wrongMethod.headers.allow, 'GET, OPTIONS, POST');

    assert.equal(
      (await call('GET', '/api/v1/products')).headers.vary,
      'Origin, Access-Control-Request-Method, Authorization, X-API-Key',
    );
    const book = await call('GET', '/v1/movies', { headers: { authorization: 'Basic abc' } });
    assert.equal(book.statusCode, 401);
    assert.deepEqual(book.json(), { error: 'invalid or missing authentication token' });
    assert.deepEqual((await call('GET', '/v1/nothing')).json(), {
      error: 'the requested resource could not be found',
    });
  });

  test('when the scheme is written in lower case, then the products API accepts it and the book does not', async () => {
    const user = await member();
    assert.equal(
      (await call('GET', '/api/v1/products', { headers: { authorization: `bearer ${user.jwt}` } }))
        .statusCode,
      200,
    );
    assert.equal(
      (await call('GET', '/v1/healthcheck', { headers: { authorization: `bearer ${user.jwt}` } })).statusCode,
      401,
    );
  });
});

describe('products', () => {
  test('when the owner creates, reads, lists, updates and deletes, then the seed shapes and statuses', async () => {
    const owner = await member();
    const created = await newProduct(owner.jwt);
    assert.equal(created.user_id, owner.id);
    assert.equal(created.price, 149.99);
    const fetched = await call('GET', `/api/v1/products/${created.id}`, { token: owner.jwt });
    assert.equal(fetched.statusCode, 200);
    assert.deepEqual(Object.keys(fetched.json()).sort(), [
      'created_at',
      'description',
      'id',
      'name',
      'price',
      'stock',
      'updated_at',
      'user_id',
    ]);

    const patched = await call('PATCH', `/api/v1/products/${created.id}`, {
      token: owner.jwt,
      body: { price: 179.99, description: null },
    });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json().price, 179.99);
    assert.equal(patched.json().name, 'Keyboard');
    assert.deepEqual(await productRow(created.id), {
      name: 'Keyboard',
      description: 'TKL',
      price: '179.99',
      stock: 42,
    });

    const deleted = await call('DELETE', `/api/v1/products/${created.id}`, { token: owner.jwt });
    assert.equal(deleted.statusCode, 204);
    assert.equal(deleted.body, '');
    assert.equal(await productRow(created.id), undefined);
    expectError(
      await call('GET', `/api/v1/products/${created.id}`, { token: owner.jwt }),
      404,
      `not_found: product with id ${created.id} does not exist`,
    );
  });

  test("when a description is empty, then it is left out as the seed's omitempty does", async () => {
    const owner = await member();
    const product = await newProduct(owner.jwt, { description: '' });
    assert.equal('description' in product, false);
  });

  test("when listing, then newest first with total, page and limit by the seed's rules", async () => {
    const owner = await member();
    const a = await newProduct(owner.jwt, { name: 'first' });
    const b = await newProduct(owner.jwt, { name: 'second' });
    const res = await call('GET', '/api/v1/products?page=1&limit=1', { token: owner.jwt });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.page, 1);
    assert.equal(body.limit, 1);
    assert.deepEqual(
      body.data.map((p: { id: number }) => p.id),
      [b.id],
    );
    const { rows } = await db.query('SELECT count(*)::int AS n FROM products');
    assert.equal(body.total, rows[0].n);
    const second = (await call('GET', '/api/v1/products?page=2&limit=1', { token: owner.jwt })).json();
    assert.deepEqual(
      second.data.map((p: { id: number }) => p.id),
      [a.id],
    );
    for (const [query, page, limit] of [
      ['page=0&limit=0', 1, 20],
      ['page=-3&limit=101', 1, 20],
      ['page=x&limit=100', 1, 100],
      ['page=99999999&limit=5', 99999999, 5],
    ] as const) {
      const list = (await call('GET', `/api/v1/products?${query}`, { token: owner.jwt })).json();
      assert.equal(list.page, page, query);
      assert.equal(list.limit, limit, query);
    }
    // the echo is the page served, to the last digit (a double would say 9223372036854776000)
    const last = await call('GET', '/api/v1/products?page=9223372036854775807&limit=1', { token: owner.jwt });
    assert.match(last.body, /"page":9223372036854775807,/);
    const past = (await call('GET', '/api/v1/products?page=99999999999999', { token: owner.jwt })).json();
    assert.deepEqual(past.data, []);
    assert.equal(past.total, rows[0].n);
  });

  test('when an id is not an int64 or names no product, then 400 or 404 with the seed message', async () => {
    const owner = await member();
    for (const id of ['abc', '1.5', '99999999999999999999'])
      expectError(
        await call('GET', `/api/v1/products/${id}`, { token: owner.jwt }),
        400,
        'invalid product id',
      );
    expectError(
      await call('DELETE', '/api/v1/products/abc', { token: owner.jwt }),
      400,
      'invalid product id',
    );
    expectError(
      await call('GET', '/api/v1/products/+0042', { token: owner.jwt }),
      404,
      'not_found: product with id 42 does not exist',
    );
    expectError(
      await call('PATCH', '/api/v1/products/-7', { token: owner.jwt, body: { name: 'x' } }),
      404,
      'not_found: product with id -7 does not exist',
    );
  });

  test('when a product breaks a rule, then 422 and nothing is stored', async () => {
    const owner = await member();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ name: '   ' }, 'validation: product name is required'],
      [{ price: -1 }, 'validation: price cannot be negative'],
      [{ stock: -1 }, 'validation: stock cannot be negative'],
      [{ price: 1.005 }, 'validation: price must have at most two decimal places'],
      // within a millionth of a cent: once rounded and stored
      [{ price: 1.000000001 }, 'validation: price must have at most two decimal places'],
      [{ price: 0.30000000000000004 }, 'validation: price must have at most two decimal places'],
      [{ price: 149.9900000001 }, 'validation: price must have at most two decimal places'],
      [{ price: 100000000 }, 'validation: price must be less than 100000000'],
      [{ stock: 2147483648 }, 'validation: stock must not be more than 2147483647'],
      [{ name: 'a\u0000b' }, 'validation: name must not contain a NUL character'],
      [{ description: '\u0000' }, 'validation: description must not contain a NUL character'],
    ];
    const before = (await db.query('SELECT count(*)::int AS n FROM products')).rows[0].n;
    for (const [fields, message] of cases) {
      const res = await call('POST', '/api/v1/products', {
        token: owner.jwt,
        body: { name: 'ok', price: 1, stock: 1, ...fields },
      });
      expectError(res, 422, message);
    }
    assert.equal((await db.query('SELECT count(*)::int AS n FROM products')).rows[0].n, before);
    for (const body of ['{"name": 5}', '{"stock": 1.5}', '{"price": "1"}', 'nope'])
      expectError(
        await call('POST', '/api/v1/products', { token: owner.jwt, body }),
        400,
        'invalid request body',
      );
    const huge = await call('POST', '/api/v1/products', {
      token: owner.jwt,
      body: JSON.stringify({ name: 'x', description: 'x'.repeat(1_100_000), price: 1 }),
    });
    expectError(huge, 413, 'request body too large');
    // unknown keys are ignored, as Go's decoder does without DisallowUnknownFields
    assert.equal(
      (
        await call('POST', '/api/v1/products', {
          token: owner.jwt,
          body: { name: 'x', price: 0.5, colour: 'red' },
        })
      ).statusCode,
      201,
    );
  });

  test('when a PATCH is empty or breaks a rule, then 422 and the row is unchanged', async () => {
    const owner = await member();
    const product = await newProduct(owner.jwt);
    const row = await productRow(product.id);
    for (const [body, message] of [
      [{}, 'validation: no fields provided for update'],
      ['null', 'validation: no fields provided for update'],
      [{ name: null, price: null }, 'validation: no fields provided for update'],
      [{ name: ' ' }, 'validation: product name cannot be empty'],
      [{ price: -0.01 }, 'validation: price cannot be negative'],
      [{ stock: -1 }, 'validation: stock cannot be negative'],
      [{ price: 10.001 }, 'validation: price must have at most two decimal places'],
    ] as const) {
      expectError(
        await call('PATCH', `/api/v1/products/${product.id}`, { token: owner.jwt, body }),
        422,
        message,
      );
    }
    assert.deepEqual(await productRow(product.id), row);
  });
});

describe('text length limits', () => {
  test('when a name or description is longer than its limit, then 422 on POST and PATCH, and the limit itself is stored', async () => {
    const owner = await member();
    const tooLong: Array<[Record<string, unknown>, string]> = [
      [{ name: 'n'.repeat(201) }, 'validation: name must not be more than 200 characters long'],
      [
        { description: 'd'.repeat(10_001) },
        'validation: description must not be more than 10000 characters long',
      ],
    ];
    const product = await newProduct(owner.jwt);
    const row = await productRow(product.id);
    for (const [fields, message] of tooLong) {
      expectError(
        await call('POST', '/api/v1/products', {
          token: owner.jwt,
          body: { name: 'ok', price: 1, ...fields },
        }),
        422,
        message,
      );
      expectError(
        await call('PATCH', `/api/v1/products/${product.id}`, { token: owner.jwt, body: fields }),
        422,
        message,
      );
    }
    assert.deepEqual(await productRow(product.id), row);
    // characters are code points, as the schema's maxLength counts them: 200 emoji are 400 UTF-16 units
    const longest = await newProduct(owner.jwt, {
      name: '\u{1F600}'.repeat(200),
      description: 'd'.repeat(10_000),
    });
    assert.equal([...longest.name].length, 200);
  });
});

describe('a statement that runs out of time', () => {
  test('when the list waits past the statement timeout, then 503 with Retry-After in the envelope, not 500', async () => {
    const slow = await buildTestApp({ flags: ['-db-query-timeout', '300ms'] });
    const user = await createUser(slow.db);
    const locker = await slow.db.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE products IN ACCESS EXCLUSIVE MODE');
      const res = await slow.app.inject({
        method: 'GET',
        url: '/api/v1/products',
        headers: { authorization: `Bearer ${user.token}` },
      });
      expectError(res, 503, 'the service is temporarily unavailable, please try again later');
      assert.equal(res.headers['retry-after'], '5');
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
  });
});

describe('request bodies in a Content-Encoding', () => {
  test("when the coding is unknown or the body does not decode, then 400 with each API's message for an unreadable body", async () => {
    const owner = await member();
    const cases: Array<[string, string | Buffer]> = [
      ['foo', '{"name":"x"}'],
      ['gzip, gzip', '{"name":"x"}'],
      ['br', '{"name":"x"}'],
      ['gzip', Buffer.from('garbage')],
    ];
    for (const [encoding, payload] of cases) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/products',
        headers: { authorization: `Bearer ${owner.jwt}`, 'content-encoding': encoding },
        payload,
      });
      expectError(res, 400, 'invalid request body');
      const book = await app.inject({
        method: 'POST',
        url: '/v1/tokens/authentication',
        headers: { 'content-encoding': encoding },
        payload,
      });
      assert.equal(book.statusCode, 400, book.body);
      assert.match(
        book.json().error,
        /^body (has an unsupported|could not be decoded by its) Content-Encoding$/,
      );
    }
  });
});

describe('ownership', () => {
  test("when user B changes or deletes A's product, then 403 and A's row is unchanged, also under 20 concurrent attempts", async () => {
    const a = await member();
    const b = await member();
    const product = await newProduct(a.jwt);
    const row = await productRow(product.id);
    expectError(
      await call('PATCH', `/api/v1/products/${product.id}`, { token: b.jwt, body: { name: 'mine' } }),
      403,
      'forbidden: you do not own this product',
    );
    expectError(
      await call('DELETE', `/api/v1/products/${product.id}`, { token: b.jwt }),
      403,
      'forbidden: you do not own this product',
    );
    // the seed checks ownership before the fields
    expectError(
      await call('PATCH', `/api/v1/products/${product.id}`, { token: b.jwt, body: {} }),
      403,
      'forbidden: you do not own this product',
    );
    const attempts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? call('PATCH', `/api/v1/products/${product.id}`, {
              token: b.jwt,
              body: { name: `stolen ${i}`, price: 0 },
            })
          : call('DELETE', `/api/v1/products/${product.id}`, { token: b.bookToken }),
      ),
    );
    for (const res of attempts) expectError(res, 403, 'forbidden: you do not own this product');
    assert.deepEqual(await productRow(product.id), row);
  });

  test("when an admin changes or deletes someone else's product, then it succeeds", async () => {
    const a = await member();
    const admin = await member();
    await db.query("UPDATE users SET role = 'admin' WHERE id = $1", [admin.id]);
    const product = await newProduct(a.jwt);
    const res = await call('PATCH', `/api/v1/products/${product.id}`, {
      token: admin.bookToken,
      body: { stock: 1 },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().user_id, a.id);
    assert.equal(
      (await call('DELETE', `/api/v1/products/${product.id}`, { token: admin.bookToken })).statusCode,
      204,
    );
  });
});

describe('both APIs take every credential', () => {
  test('when a book token calls the products API and a JWT the movies API, then both work', async () => {
    const user = await member({ permissions: ['movies:read'] });
    assert.equal((await call('GET', '/api/v1/products', { token: user.bookToken })).statusCode, 200);
    assert.equal((await call('GET', '/v1/movies', { token: user.jwt })).statusCode, 200);
    // the book's permission rule holds whatever the credential
    const write = await call('POST', '/v1/movies', {
      token: user.jwt,
      body: { title: 'x', year: 2000, runtime: '90 mins', genres: ['a'] },
    });
    assert.equal(write.statusCode, 403);
    assert.deepEqual(write.json(), {
      error: "your user account doesn't have the necessary permissions to access this resource",
    });
  });
});

test('when the products page is read again and again, then PostgreSQL plans it once, not on every call', async () => {
  const { selectProductPage } = await import('../src/products/products.sql.ts');
  // With a handful of rows every plan is cheap; the difference shows with some thousands.
  const owner = await createUser(db, { email: 'many-products@example.com', activated: true });
  await db.query(
    `INSERT INTO products (user_id, name, description, price, stock)
     SELECT $1, 'product ' || n, '', 1, 1 FROM generate_series(1, 5000) AS n`,
    [owner.id],
  );
  await db.query('ANALYZE products');
  // A connection of its own: the plan counters are per connection and statement.
  const client = new pg.Client({ connectionString: db.options.connectionString });
  await client.connect();
  try {
    for (let call = 0; call < 10; call++) await selectProductPage(client as never, 20, BigInt(call));
    const { rows } = await client.query<{ generic_plans: string; custom_plans: string }>(
      "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'select-product-page'",
    );
    assert.ok(Number(rows[0]?.custom_plans) <= 5, `${rows[0]?.custom_plans} custom plans of 10 calls`);
    assert.ok(Number(rows[0]?.generic_plans) >= 5, `${rows[0]?.generic_plans} generic plans of 10 calls`);
  } finally {
    await client.end();
  }
});
