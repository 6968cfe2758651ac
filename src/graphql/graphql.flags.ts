// Flags of GraphQL: whether it is served at start, and the limits that refuse an operation
// before it runs. Whether it is served is the feature flag `feature-graphql` (src/settings/),
// which an operator may turn off, on or roll out at run time; -graphql-enabled is its
// start-up value, so that one switch decides.
import { type FlagValues, feature, int, when } from '../platform/flags.ts';

export const graphqlFlags = {
  'graphql-enabled': feature('graphql', {
    default: 'true',
    help: 'serve GraphQL at `/graphql`: the start-up value of the feature flag `feature-graphql`, which can turn it off, on or roll it out to a share of users at run time (404 when off)',
  }),
  'graphql-max-depth': int({
    default: '10',
    help: 'GraphQL operations nested deeper are refused before execution (400 `QUERY_TOO_DEEP`)',
    rule: when((n) => n >= 1, 'must be at least 1'),
  }),
  'graphql-max-cost': int({
    default: '5000',
    help: 'GraphQL operations costing more are refused before execution (400 `QUERY_TOO_COSTLY`); list sizes multiply, so a full `movies` page of 100 costs 1,202 (see [GraphQL](graphql.md))',
    rule: when((n) => n >= 1, 'must be at least 1'),
  }),
};

export function graphqlConfig(v: FlagValues<typeof graphqlFlags>) {
  return Object.freeze({ maxDepth: v['graphql-max-depth'], maxCost: v['graphql-max-cost'] });
}
