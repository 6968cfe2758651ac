// Products in GraphQL: the products API's rules and messages, and a page of products with
// their owners in a bounded number of SQL statements (counted on the app's pool).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { buildTestApp, createUser, type Inject, withToken } from './helpers.ts';

const { app, db } = await buildTestApp();
const owners = await Promise.all(
  Array.from({ length: 4 }, (_, i) => createUser(db, { email: `owner${i}@example.com` })),
);
const other = await createUser(db, {});
const as = (token: string) => withToken(app, token);

type Result = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions: { code?: string; status?: number } }[];
};

async function gql(inject: Inject, query: string, variables?: Record<string, unknown>): Promise<Result> {
  const res = await inject({ method: 'POST', url: '/graphql', payload: { query, variables } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as Result;
}

const CREATE = `mutation($input: ProductInput!) { createProduct(input: $input) { id name price stock owner { id } } }`;

async function createProduct(token: string, name: string): Promise<string> {
  const result = await gql(as(token), CREATE, { input: { name, price: 9.99, stock: 3 } });
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return (result.data?.createProduct as { id: string } | undefined)?.id ?? assert.fail('no product');
}

describe('products in GraphQL', () => {
  test("when a product is created, read, updated and deleted, then each answer is the use case's", async () => {
    const [owner] = owners;
    assert.ok(owner);
    const id = await createProduct(owner.token, 'Desk Lamp');
    const read = await gql(
      as(other.token),
      `query($id: ID!) { product(id: $id) { name price owner { id name } } }`,
      {
        id,
      },
    );
    const product = read.data?.product as {
      name: string;
      price: number;
      owner: { id: string; name: string };
    };
    assert.equal(product.name, 'Desk Lamp');
    assert.equal(product.price, 9.99);
    assert.equal(product.owner.id, String(owner.id));
    assert.match(product.owner.name, /^User \d+$/);
    const updated = await gql(
      as(owner.token),
      `mutation($id: ID!) { updateProduct(id: $id, input: { stock: 7 }) { stock } }`,
      { id },
    );
    assert.deepEqual(updated.data?.updateProduct, { stock: 7 });

    const invalid = await gql(as(owner.token), CREATE, { input: { name: 'X', price: 1.001, stock: 1 } });
    assert.equal(invalid.errors?.[0]?.extensions.status, 422);

    const deleted = await gql(as(owner.token), `mutation($id: ID!) { deleteProduct(id: $id) }`, { id });
    assert.deepEqual(deleted.data, { deleteProduct: id });
    const gone = await gql(as(owner.token), `query($id: ID!) { product(id: $id) { id } }`, { id });
    assert.equal(gone.errors?.[0]?.extensions.status, 404);
    assert.equal(gone.errors?.[0]?.message, `not_found: product with id ${id} does not exist`);
  });

  test('when someone else updates or deletes a product, then FORBIDDEN and the row is unchanged', async () => {
    const [owner] = owners;
    assert.ok(owner);
    const id = await createProduct(owner.token, 'Guarded');
    const update = await gql(
      as(other.token),
      `mutation($id: ID!) { updateProduct(id: $id, input: { stock: 0 }) { id } }`,
      {
        id,
      },
    );
    assert.equal(update.errors?.[0]?.extensions.code, 'FORBIDDEN');
    assert.equal(update.errors?.[0]?.message, 'forbidden: you do not own this product');
    const remove = await gql(as(other.token), `mutation($id: ID!) { deleteProduct(id: $id) }`, { id });
    assert.equal(remove.errors?.[0]?.extensions.code, 'FORBIDDEN');
    const { rows } = await db.query('SELECT stock FROM products WHERE id = $1', [id]);
    assert.deepEqual(rows, [{ stock: 3 }]);
  });

  test('when a page of 20 products is read with owners and their products, then the statements are bounded, not one per product', async () => {
    for (let i = 0; i < 20; i++) {
      await createProduct((owners[i % owners.length] as { token: string }).token, `Counted ${i}`);
    }
    const query = `{ products(limit: 20) { total data { name owner { name products { name } } } } }`;
    // Warm: authentication (identity cache off here) is one statement per request anyway.
    await gql(as(other.token), query);
    let statements = 0;
    const original = db.query.bind(db);
    db.query = ((...args: Parameters<typeof db.query>) => {
      // The creations' wake-ups of the change streams may still be on their way (they are
      // spaced, src/realtime/wakeups.ts): not the read's statements.
      if ((args[0] as { name?: string }).name !== 'notify-events') statements++;
      return original(...args);
    }) as typeof db.query;
    try {
      const page = await gql(as(other.token), query);
      assert.equal(page.errors, undefined, JSON.stringify(page.errors));
      const data =
        (page.data?.products as { data: { owner: { products: unknown[] } }[] } | undefined)?.data ?? [];
      assert.equal(data.length, 20);
      assert.ok(data.every((p) => p.owner.products.length > 0));
    } finally {
      db.query = original;
    }
    // authentication, the page, the owners, their products: never 20 owner lookups
    assert.ok(statements <= 4, `${statements} statements`);
    assert.ok(statements >= 3, `${statements} statements: the loaders were not reached through db.query`);
  });

  test("when an API key without products:read reaches an owner's products through a mutation, then FORBIDDEN and no product is shown", async () => {
    const owner = await createUser(db);
    await createProduct(owner.token, 'Private');
    const made = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { authorization: `Bearer ${owner.token}` },
      payload: { name: 'writer', scopes: ['products:write'] },
    });
    assert.equal(made.statusCode, 201, made.body);
    const key = made.json().key as string;
    const writeOnly: Inject = (options) => {
      const given = options as InjectOptions;
      return app.inject({ ...given, headers: { ...given.headers, 'x-api-key': key } });
    };
    const result = await gql(
      writeOnly,
      'mutation { createProduct(input: { name: "x" }) { id owner { products { name } } } }',
    );
    assert.equal(result.errors?.[0]?.extensions.code, 'FORBIDDEN', JSON.stringify(result));
    assert.doesNotMatch(JSON.stringify(result), /Private/);
  });

  test("when a credential is missing or lacks the scope, then the products API's REST message, not the book's", async () => {
    const owner = await createUser(db);
    const made = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { authorization: `Bearer ${owner.token}` },
      payload: { name: 'reader', scopes: ['products:read'] },
    });
    assert.equal(made.statusCode, 201, made.body);
    const key = made.json().key as string;
    const readOnly: Inject = (options) => {
      const given = options as InjectOptions;
      return app.inject({ ...given, headers: { ...given.headers, 'x-api-key': key } });
    };
    const refused = await gql(readOnly, 'mutation { createProduct(input: { name: "g" }) { id } }');
    assert.deepEqual(refused.errors?.[0]?.extensions, {
      code: 'FORBIDDEN',
      status: 403,
      error: 'you do not have permission to perform this action',
    });
    const anonymous = await gql((options) => app.inject(options), '{ product(id: "1") { id } }');
    assert.deepEqual(anonymous.errors?.[0]?.extensions, {
      code: 'UNAUTHENTICATED',
      status: 401,
      error: 'authorization header is required',
    });
  });

  test('when the caller has no credential, then UNAUTHENTICATED', async () => {
    const result = await gql((options) => app.inject(options), '{ products { total } }');
    assert.equal(result.errors?.[0]?.extensions.code, 'UNAUTHENTICATED');
  });
});
