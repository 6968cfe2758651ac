// The GraphQL SDL is written by hand beside the REST schemas it mirrors: this fails when
// the two drift apart in field names (snake_case on REST, camelCase in GraphQL) or in
// nullability. The deliberate differences are listed, each with its reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type GraphQLSchema, isInputObjectType, isNonNullType, isObjectType } from 'graphql';
import type { TObject } from 'typebox';
import { UserJsonSchema } from '../src/accounts/user.ts';
import { buildGraphqlSchema } from '../src/graphql/schema.ts';
import { MovieJsonSchema, UpdateMovieBody } from '../src/movies/movie.ts';
import { OrderEventsSchema, OrderSchema, PlaceOrderRequest } from '../src/orders/order.ts';
import { ProductSchema, UpdateProductRequest } from '../src/products/product.ts';

const camel = (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

// field → whether it is non-null, as the REST schema says: required and not nullable.
function restFields(schema: TObject): Record<string, boolean> {
  const required = new Set<string>(schema.required ?? []);
  return Object.fromEntries(
    Object.entries(schema.properties).map(([name, property]) => {
      const anyOf = (property as { anyOf?: { type?: string }[] }).anyOf;
      const nullable = anyOf?.some((member) => member.type === 'null') ?? false;
      return [camel(name), required.has(name) && !nullable];
    }),
  );
}

function graphqlFields(schema: GraphQLSchema, typeName: string): Record<string, boolean> {
  const type = schema.getType(typeName);
  assert.ok(isObjectType(type) || isInputObjectType(type), `${typeName} is an object or input type`);
  return Object.fromEntries(
    Object.values(type.getFields()).map((field) => [field.name, isNonNullType(field.type)]),
  );
}

type Pair = Readonly<{
  graphql: string;
  rest: TObject;
  // fields that differ on purpose: removed from both sides before comparing
  apart?: Readonly<Record<string, string>>;
}>;

const PAIRS: readonly Pair[] = [
  { graphql: 'Movie', rest: MovieJsonSchema },
  { graphql: 'MovieInput', rest: UpdateMovieBody },
  {
    graphql: 'User',
    rest: UserJsonSchema,
    apart: { products: "GraphQL reaches a user's products from the user; REST from /api/v1/products" },
  },
  {
    graphql: 'Product',
    rest: ProductSchema,
    apart: {
      userId: 'REST gives the owner id; GraphQL the owner object',
      owner: 'REST gives the owner id; GraphQL the owner object',
      description: 'REST leaves an empty description out (Go\'s omitempty); GraphQL answers ""',
    },
  },
  { graphql: 'ProductInput', rest: UpdateProductRequest },
  { graphql: 'Order', rest: OrderSchema },
  { graphql: 'OrderItem', rest: OrderSchema.properties.items.items },
  { graphql: 'OrderEvent', rest: OrderEventsSchema.properties.events.items },
  { graphql: 'PlaceOrderInput', rest: PlaceOrderRequest },
  { graphql: 'OrderItemInput', rest: PlaceOrderRequest.properties.items.items },
];

test('when the GraphQL types are compared with the REST schemas, then names and nullability agree', () => {
  const schema = buildGraphqlSchema();
  for (const { graphql, rest, apart = {} } of PAIRS) {
    const without = (fields: Record<string, boolean>) =>
      Object.fromEntries(Object.entries(fields).filter(([name]) => !(name in apart)));
    assert.deepEqual(
      without(graphqlFields(schema, graphql)),
      without(restFields(rest)),
      `${graphql} has drifted from its REST schema`,
    );
  }
});
