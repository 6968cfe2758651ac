// Whose error table reads a resolver's failure. The products module mirrors /api/v1, whose
// messages differ from the book's for the same error classes (a missing scope, no credential):
// its resolvers' failures are marked here, so GraphQL's `extensions.error` is that API's
// REST body for the same failure, as docs/api.md says it is.
import type { GraphqlModule } from './module.ts';

const productsApiFailures = new WeakSet<object>();

export function isProductsApiFailure(err: unknown): boolean {
  return typeof err === 'object' && err !== null && productsApiFailures.has(err);
}

function mark(err: unknown): never {
  if (typeof err === 'object' && err !== null) productsApiFailures.add(err);
  throw err;
}

// A resolver whose failures are marked; a synchronous one stays synchronous (Product.price
// runs once per item of a page).
function marked(resolve: (...args: unknown[]) => unknown) {
  return (...args: unknown[]): unknown => {
    try {
      const result = resolve(...args);
      return result instanceof Promise ? result.catch(mark) : result;
    } catch (err) {
      return mark(err);
    }
  };
}

// `resolvers` with every field resolver's failures read by the products API's table.
export function productsApiResolvers(resolvers: GraphqlModule['resolvers']): GraphqlModule['resolvers'] {
  return Object.fromEntries(
    Object.entries(resolvers).map(([type, fields]) => [
      type,
      Object.fromEntries(
        Object.entries(fields).map(([name, resolve]) => [
          name,
          typeof resolve === 'function' ? marked(resolve) : resolve,
        ]),
      ),
    ]),
  );
}
