// The cost of an operation, estimated before execution as the number of values its response
// can hold: 1 a scalar, 2 an object, and a list multiplies what it holds by the number of items
// it may return. Aliases and nested lists therefore add up and multiply as their responses
// do (graphql-armor's cost rule counts each field once, whatever the page size).
import {
  type FieldNode,
  type GraphQLError,
  type GraphQLNamedType,
  getNamedType,
  getNullableType,
  isCompositeType,
  isInterfaceType,
  isLeafType,
  isListType,
  isObjectType,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';

// How many items a list field may return. `inherited` is what the enclosing paged field passed
// down (a page's list gets its size from the arguments of the field that returns the page).
export type ListSize = (field: FieldNode, inherited: number) => { size: number; pass?: number };

// Keyed `Type.field`. A list field with no entry counts as the largest page.
export type ListSizes = Readonly<Record<string, ListSize>>;

export const MAX_PAGE = 100;

// The size a paging argument asks for: a literal within 1..max is itself; a variable (not
// known at validation, which is cached per document) is the maximum; anything else (absent,
// null, out of range) is the default, which is what the resolver serves or refuses.
export function pageArgument(field: FieldNode, name: string, byDefault: number, max = MAX_PAGE): number {
  const value = field.arguments?.find((a) => a.name.value === name)?.value;
  if (value?.kind === Kind.VARIABLE) return max;
  if (value?.kind !== Kind.INT) return byDefault;
  const n = Number(value.value);
  return n >= 1 && n <= max ? n : byDefault;
}

const SCALAR = 1;
const OBJECT = 2;

export function operationCost(
  context: ValidationContext,
  sizes: ListSizes,
  set: SelectionSetNode,
  root: GraphQLNamedType,
): number {
  const schema = context.getSchema();
  const fragments = new Set<string>();

  const selectionCost = (selections: SelectionSetNode, type: GraphQLNamedType, inherited: number): number => {
    let total = 0;
    for (const selection of selections.selections) {
      if (selection.kind === Kind.FIELD) {
        total += fieldCost(selection, type, inherited);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const on = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : type;
        if (on) total += selectionCost(selection.selectionSet, on, inherited);
      } else {
        // A fragment spread in itself is refused by another rule; here it must not loop.
        const name = selection.name.value;
        const fragment = context.getFragment(name);
        const on = fragment && schema.getType(fragment.typeCondition.name.value);
        if (!fragment || !on || fragments.has(name)) continue;
        fragments.add(name);
        total += selectionCost(fragment.selectionSet, on, inherited);
        fragments.delete(name);
      }
    }
    return total;
  };

  const fieldCost = (field: FieldNode, parent: GraphQLNamedType, inherited: number): number => {
    const definition =
      isObjectType(parent) || isInterfaceType(parent) ? parent.getFields()[field.name.value] : undefined;
    // __typename, introspection (bounded by the schema) or an unknown field (refused elsewhere)
    if (!definition) return SCALAR;
    const sizing = sizes[`${parent.name}.${field.name.value}`];
    const { size, pass } = sizing
      ? sizing(field, inherited)
      : { size: isListType(getNullableType(definition.type)) ? MAX_PAGE : 1, pass: undefined };
    const type = getNamedType(definition.type);
    if (isLeafType(type) || !field.selectionSet || !isCompositeType(type)) return size * SCALAR;
    return size * (OBJECT + selectionCost(field.selectionSet, type, pass ?? MAX_PAGE));
  };

  return selectionCost(set, root, MAX_PAGE);
}

// Refuses, before any resolver runs, an operation whose cost is over `maxCost`.
export function costRule(sizes: ListSizes, maxCost: number, refusal: () => GraphQLError): ValidationRule {
  return (context: ValidationContext) => ({
    OperationDefinition(operation) {
      const root = context.getSchema().getRootType(operation.operation);
      if (!root) return;
      const cost = operationCost(context, sizes, operation.selectionSet, root);
      if (cost > maxCost) context.reportError(refusal());
    },
  });
}

// The most root fields of a mutation. Each one is a write, and the limiter charges a request
// once: without a cap, one request of 80 aliased createProduct calls wrote 80 products (an
// outside review). Ten keeps a client's batch of a few related writes in one request.
export const MAX_MUTATION_FIELDS = 10;

// The root fields of `set`, aliases and fragments included (__typename writes nothing).
function rootFieldCount(context: ValidationContext, set: SelectionSetNode, seen: Set<string>): number {
  let count = 0;
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) {
      if (!selection.name.value.startsWith('__')) count++;
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      count += rootFieldCount(context, selection.selectionSet, seen);
    } else {
      const fragment = context.getFragment(selection.name.value);
      if (!fragment || seen.has(selection.name.value)) continue;
      seen.add(selection.name.value);
      count += rootFieldCount(context, fragment.selectionSet, seen);
    }
  }
  return count;
}

// Refuses, before any resolver runs, a mutation of more than `max` root fields.
export function mutationFieldsRule(max: number, refusal: (count: number) => GraphQLError): ValidationRule {
  return (context: ValidationContext) => ({
    OperationDefinition(operation) {
      if (operation.operation !== 'mutation') return;
      const count = rootFieldCount(context, operation.selectionSet, new Set());
      if (count > max) context.reportError(refusal(count));
    },
  });
}
