// GraphQL under abuse: list sizes in the cost, bounded pages on every list of products, the
// response-size ceiling, no field suggestions in production, and the envelope of the methods
// /graphql does not serve.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type GraphQLObjectType, getNullableType, isListType, isObjectType } from 'graphql';
import { MAX_QUERY_LENGTH, MAX_QUERY_TOKENS } from '../src/graphql/graphql.ts';
import { buildGraphqlSchema, listSizes } from '../src/graphql/schema.ts';
import { MESSAGES } from '../src/platform/errors.ts';
import { buildTestApp, createUser, type Inject, withToken } from './helpers.ts';

const { app, db } = await buildTestApp();
const production = await buildTestApp({ flags: ['-env', 'production'] });
const as = (token: string) => withToken(app, token);

type GraphqlBody = {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
};

async function gql(inject: Inject, query: string, variables?: Record<string, unknown>) {
  const res = await inject({ method: 'POST', url: '/graphql', payload: { query, variables } });
  return { status: res.statusCode, body: res.json() as GraphqlBody };
}

// `count` products of a new owner, straight in the database; names "<prefix> 1" (oldest) up.
async function owner(prefix: string, count: number, description = '') {
  const user = await createUser(db);
  await db.query(
    `INSERT INTO products (user_id, name, description, price, stock, created_at)
     SELECT $1, $2 || ' ' || n, $3, 1, 1, now() - make_interval(secs => $4 - n) FROM generate_series(1, $4) AS n`,
    [user.id, prefix, description, count],
  );
  return user;
}

const prolific = await owner('Prolific', 30);
const reader = as(prolific.token);

describe('mutation fields', () => {
  const creates = (n: number, from = 0) =>
    Array.from({ length: n }, (_, i) => `c${from + i}: createProduct(input: { name: "amp" }) { id }`).join(
      '\n',
    );
  const amps = async () =>
    (await db.query("SELECT count(*)::int AS n FROM products WHERE name = 'amp'")).rows[0].n;

  test('when a mutation has more than 10 root fields, aliases and fragments included, then 400 TOO_MANY_MUTATIONS and nothing is written', async () => {
    const writer = as((await createUser(db)).token);
    const before = await amps();
    for (const query of [
      `mutation { ${creates(11)} }`,
      `mutation { ${creates(6)} ...more } fragment more on Mutation { ${creates(3, 6)} d1: deleteMovie(id: "1") d2: cancelOrder(id: "1") { id } }`,
    ]) {
      const { status, body } = await gql(writer, query);
      assert.equal(status, 400, JSON.stringify(body));
      assert.equal(body.data, null);
      assert.deepEqual(body.errors?.[0]?.extensions, {
        code: 'TOO_MANY_MUTATIONS',
        status: 400,
        error: 'a mutation may have at most 10 fields (aliases included), this one has 11',
      });
    }
    assert.equal(await amps(), before);
    const ten = await gql(writer, `mutation { __typename ${creates(10)} }`);
    assert.equal(ten.status, 200, JSON.stringify(ten.body));
    assert.equal(await amps(), before + 10);
  });
});

describe('list sizes', () => {
  test('when the schema is built, then the cost rule knows the size of every list field', () => {
    const lists = Object.values(buildGraphqlSchema().getTypeMap())
      .filter((type) => isObjectType(type) && !type.name.startsWith('__'))
      .flatMap((type) =>
        Object.values((type as GraphQLObjectType).getFields())
          .filter((field) => isListType(getNullableType(field.type)))
          .map((field) => `${type.name}.${field.name}`),
      );
    assert.ok(lists.includes('Owner.products'));
    assert.deepEqual(
      lists.filter((name) => !(name in listSizes())),
      [],
    );
  });

  test('when aliases multiply nested lists of products, then 400 QUERY_TOO_COSTLY and nothing runs', async () => {
    const nested =
      'products(limit: 100) { data { owner { products(limit: 100) { name owner { products { name } } } } } }';
    const aliases = Array.from({ length: 10 }, (_, i) => `a${i}: ${nested}`).join('\n');
    const { status, body } = await gql(reader, `{ ${aliases} }`);
    assert.equal(status, 400);
    assert.equal(body.data, null);
    assert.deepEqual(body.errors?.[0]?.extensions, {
      code: 'QUERY_TOO_COSTLY',
      status: 400,
      error: 'query cost exceeds the limit of 5000',
    });
  });

  test('when a page size comes in a variable, then it counts as the largest page', async () => {
    const query =
      'query($n: Int) { products(limit: $n) { data { owner { products(limit: $n) { name } } } } }';
    const { status, body } = await gql(reader, query, { n: 2 });
    assert.equal(status, 400);
    assert.equal(body.errors?.[0]?.extensions?.code, 'QUERY_TOO_COSTLY');
    const literal = await gql(
      reader,
      '{ products(limit: 2) { data { owner { products(limit: 2) { name } } } } }',
    );
    assert.equal(literal.status, 200, JSON.stringify(literal.body));
  });

  test("when an owner's products are asked for without arguments, then at most the default page of 20, newest first", async () => {
    const { status, body } = await gql(reader, '{ me { user { products { name } } } }');
    assert.equal(status, 200, JSON.stringify(body));
    const me = body.data?.me as { user: { products: { name: string }[] } };
    const names = me.user.products.map((p) => p.name);
    assert.deepEqual(
      names,
      Array.from({ length: 20 }, (_, i) => `Prolific ${30 - i}`),
    );
  });

  test("when a page of an owner's products is asked for, then that page, as GET /api/v1/products pages", async () => {
    const { status, body } = await gql(
      reader,
      `{ products(limit: 100) { total data { name owner { id products(page: 2, limit: 12) { name } } } } }`,
    );
    assert.equal(status, 200, JSON.stringify(body));
    const page = body.data?.products as {
      data: { name: string; owner: { id: string; products: { name: string }[] } }[];
    };
    const mine = page.data.find((p) => p.owner.id === String(prolific.id));
    assert.deepEqual(
      mine?.owner.products.map((p) => p.name),
      Array.from({ length: 12 }, (_, i) => `Prolific ${18 - i}`),
    );
    const beyond = await gql(reader, '{ me { user { products(page: 4, limit: 10) { name } } } }');
    assert.deepEqual(beyond.body, { data: { me: { user: { products: [] } } } });
  });
});

describe('response size', () => {
  test('when the products asked for hold more than 10 MB of text, then 400 RESPONSE_TOO_LARGE and no data', async () => {
    const wordy = await owner('Wordy', 11, 'x'.repeat(1_000_000));
    const message = 'response exceeds the limit of 10485760 bytes: ask for fewer items or fields';
    // Twice: the second run is graphql-jit's compiled query.
    for (let run = 0; run < 2; run++) {
      const { status, body } = await gql(
        as(wordy.token),
        '{ me { user { products(limit: 20) { name description } } } }',
      );
      assert.equal(status, 400);
      assert.deepEqual(body, {
        data: null,
        errors: [{ message, extensions: { code: 'RESPONSE_TOO_LARGE', status: 400, error: message } }],
      });
    }
    const fewer = await gql(as(wordy.token), '{ me { user { products(limit: 5) { description } } } }');
    assert.equal(fewer.status, 200);
  });
});

describe('production', () => {
  test('when a field or argument is misspelled in production, then the error suggests nothing', async () => {
    for (const [query, message] of [
      ['{ moviez { movies { id } } }', 'Cannot query field "moviez" on type "Query".'],
      [
        '{ movies(pagesize: 2) { metadata { totalRecords } } }',
        'Unknown argument "pagesize" on field "Query.movies".',
      ],
    ]) {
      const res = await production.app.inject({ method: 'POST', url: '/graphql', payload: { query } });
      assert.equal(res.statusCode, 400);
      const body = res.json() as GraphqlBody;
      assert.equal(body.errors?.[0]?.message, message);
      assert.doesNotMatch(res.body, /Did you mean/);
    }
    // Development keeps graphql-js's help.
    const dev = await gql(reader, '{ moviez { movies { id } } }');
    assert.match(dev.body.errors?.[0]?.message ?? '', /Did you mean "movie" or "movies"\?/);
  });

  test('when PUT, PATCH, DELETE or OPTIONS come with an unknown token, then 401 in the envelope with a request id', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const) {
      const res = await production.app.inject({
        method,
        url: '/graphql',
        headers: { authorization: 'Bearer ABCDEFGHIJKLMNOPQRSTUVWXYZ' },
      });
      assert.equal(res.statusCode, 401, method);
      assert.deepEqual(res.json(), { error: MESSAGES.invalidToken }, method);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.match(String(res.headers['x-request-id']), /^[\w-]{8,}$/);
    }
  });
});

// What the query itself may be, whoever sends it: no credential is needed to reach the
// parser, so each limit holds for anonymous requests.
describe('query limits', () => {
  const anonymous: Inject = (options) => app.inject(options);
  const get = async (query: string) => {
    const res = await app.inject(`/graphql?${query}`);
    return { status: res.statusCode, body: res.json() as GraphqlBody };
  };
  const messageOf = (body: GraphqlBody) => body.errors?.[0]?.message;

  test('when unique queries of nearly 1 MB come without a credential, then each is refused at once and none stays in memory', async () => {
    const fields = 'me{user{id}}'.repeat(80_000);
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const { status, body } = await gql(anonymous, `{${fields}} #${i}`);
      assert.equal(status, 400);
      assert.equal(messageOf(body), `query must not be longer than ${MAX_QUERY_LENGTH} characters`);
      assert.ok(performance.now() - started < 500, 'refused before any parsing');
    }
    // Mercurius used to keep each failed document (about 330 MB apiece) in its error cache.
    assert.ok(process.memoryUsage().heapUsed - before < 200 * 2 ** 20);
  });

  test('when a query holds more tokens than the limit, then 400 with the parser’s message, by POST and by GET', async () => {
    const query = `{${'me{user{id}}'.repeat(Math.ceil(MAX_QUERY_TOKENS / 7))}}`;
    assert.ok(query.length <= MAX_QUERY_LENGTH);
    const message = `Syntax Error: Document contains more that ${MAX_QUERY_TOKENS} tokens. Parsing aborted.`;
    const posted = await gql(anonymous, query);
    assert.equal(posted.status, 400);
    assert.equal(messageOf(posted.body), message);
    const got = await get(`query=${encodeURIComponent(query)}`);
    assert.equal(got.status, 400);
    assert.equal(messageOf(got.body), message);
  });

  test('when the query is JSON text rather than GraphQL, then 400 with the syntax error, by POST and by GET', async () => {
    for (const [query, message] of [
      ['1', 'Syntax Error: Unexpected Int "1".'],
      ['null', 'Syntax Error: Unexpected Name "null".'],
      ['[]', 'Syntax Error: Unexpected "[".'],
      ['{}', 'Syntax Error: Expected Name, found "}".'],
      ['{"kind":"Document","definitions":[{}]}', 'Syntax Error: Expected Name, found String "kind".'],
    ] as const) {
      const posted = await gql(anonymous, query);
      assert.equal(posted.status, 400, query);
      assert.equal(messageOf(posted.body), message, query);
      const got = await get(`query=${encodeURIComponent(query)}`);
      assert.equal(got.status, 400, query);
      assert.equal(messageOf(got.body), message, query);
    }
  });

  test('when a GET names no operation the query has, or repeats a key, then 400 saying so', async () => {
    const one = encodeURIComponent('query A { __typename }');
    const two = encodeURIComponent('query A { __typename } query B { b: __typename }');
    for (const [query, message] of [
      [`query=${one}&operationName=B`, 'Unknown operation named "B".'],
      [`query=${two}`, 'Must provide operation name if query contains multiple operations.'],
      [`query=${one}&query=${one}`, 'query string must not repeat "query"'],
      [`query=${one}&variables=%7B%7D&variables=%7B%7D`, 'query string must not repeat "variables"'],
      [`query=${one}&variables=%ZZ`, '"variables" must be a JSON object'],
      [`query=${one}&extensions=%5B%5D`, '"extensions" must be a JSON object'],
      ['operationName=A', 'query string must contain "query"'],
    ] as const) {
      const { status, body } = await get(query);
      assert.equal(status, 400, query);
      assert.equal(messageOf(body), message, query);
    }
    const named = await get(`query=${two}&operationName=B&variables=%7B%7D`);
    assert.equal(named.status, 200);
    assert.deepEqual(named.body, { data: { b: 'Query' } });
  });
});
