// The GraphQL cost rule (src/graphql/cost.ts) on a small schema of its own: the values a
// response can hold, counted before any resolver runs, with aliases adding up and lists
// multiplying what they hold.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { buildSchema, type FieldNode, GraphQLError, Kind, parse, validate } from 'graphql';
import { costRule, type ListSizes, MAX_PAGE, pageArgument } from '../../src/graphql/cost.ts';

const schema = buildSchema(`
  type Movie { id: ID! title: String! genres: [String!]! related(first: Int): [Movie!]! }
  type MoviePage { total: Int! items: [Movie!]! }
  type Query { movie(id: ID!): Movie movies(first: Int): [Movie!]! page(size: Int): MoviePage! }
`);

// `Query.page` passes its size down to the page's items, as the service's paged lists do.
const SIZES: ListSizes = {
  'Query.movies': (field) => ({ size: pageArgument(field, 'first', 20) }),
  'Movie.related': (field) => ({ size: pageArgument(field, 'first', 10) }),
  'Query.page': (field) => ({ size: 1, pass: pageArgument(field, 'size', 20) }),
  'MoviePage.items': (_field, inherited) => ({ size: inherited }),
};

// The cost of `query`, read back from the rule: the smallest budget that lets it through.
function cost(query: string): number {
  const document = parse(query);
  const refusedAt = (budget: number) =>
    validate(schema, document, [costRule(SIZES, budget, () => new GraphQLError('too costly'))]).length > 0;
  let low = 0;
  let high = 1;
  while (refusedAt(high)) high *= 2;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (refusedAt(mid)) low = mid;
    else high = mid;
  }
  return high;
}

function field(source: string): FieldNode {
  const operation = parse(`{ ${source} }`).definitions[0];
  assert.ok(operation?.kind === Kind.OPERATION_DEFINITION);
  return operation.selectionSet.selections[0] as FieldNode;
}

describe('pageArgument', () => {
  test('when the argument is a literal within 1..max, then it is the size', () => {
    assert.equal(pageArgument(field('movies(first: 7)'), 'first', 20), 7);
    assert.equal(pageArgument(field(`movies(first: ${MAX_PAGE})`), 'first', 20), MAX_PAGE);
  });

  test('when the argument is a variable, then it counts as the largest page', () => {
    assert.equal(pageArgument(field('movies(first: $n)'), 'first', 20), MAX_PAGE);
  });

  test('when the argument is absent, null or out of range, then it is the default', () => {
    for (const source of ['movies', 'movies(first: null)', 'movies(first: 0)', 'movies(first: 101)']) {
      assert.equal(pageArgument(field(source), 'first', 20), 20, source);
    }
  });
});

describe('costRule', () => {
  test('when a query asks for one object, then a scalar costs 1 and the object 2', () => {
    assert.equal(cost('{ movie(id: 1) { title } }'), 3);
    assert.equal(cost('{ movie(id: 1) { id title } }'), 4);
  });

  test('when a list has no size rule, then it counts as the largest page', () => {
    assert.equal(cost('{ movie(id: 1) { genres } }'), 2 + MAX_PAGE);
  });

  test('when a paged list passes its size down, then its items are counted that many times', () => {
    assert.equal(cost('{ page(size: 5) { total items { title } } }'), 2 + 1 + 5 * 3);
  });

  test('when a fragment is spread, then its fields count as if written in place', () => {
    const spread = cost('{ movies(first: 4) { ...f } } fragment f on Movie { id title }');
    assert.equal(spread, cost('{ movies(first: 4) { id title } }'));
  });

  test('when the same list is asked for under n aliases, then the cost is n times one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 100 }), (n, first) => {
        const one = `movies(first: ${first}) { title }`;
        const aliases = Array.from({ length: n }, (_, i) => `a${i}: ${one}`).join(' ');
        assert.equal(cost(`{ ${aliases} }`), n * cost(`{ ${one} }`));
      }),
      { numRuns: 20 },
    );
  });

  test('when lists are nested, then their sizes multiply', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 100 }), (outer, inner) => {
        const query = `{ movies(first: ${outer}) { related(first: ${inner}) { title } } }`;
        assert.equal(cost(query), outer * (2 + inner * 3));
      }),
      { numRuns: 20 },
    );
  });

  test('when the cost is exactly the budget, then the query passes; one more and it is refused', () => {
    const document = parse('{ movies(first: 10) { title } }');
    const refusal = () => new GraphQLError('too costly');
    assert.deepEqual(validate(schema, document, [costRule(SIZES, 30, refusal)]), []);
    const errors = validate(schema, document, [costRule(SIZES, 29, refusal)]);
    assert.deepEqual(
      errors.map((e) => e.message),
      ['too costly'],
    );
  });
});
