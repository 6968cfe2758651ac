// A ceiling on the size of a GraphQL response. The cost rule bounds how many values an
// operation returns; most strings have a length rule (a title, a name: 500 bytes), but a
// product's name and description have none but the 1 MB body limit. Their resolvers charge
// their length to a budget of the request, and the first one over stops the operation: the
// response is then one error, not megabytes.
export const MAX_RESPONSE_BYTES = 10 * 1024 * 1024;

export class ResponseTooLargeError extends Error {
  constructor() {
    super(`response exceeds the limit of ${MAX_RESPONSE_BYTES} bytes: ask for fewer items or fields`);
  }
}

export type ResponseBudget = { left: number };

export const newBudget = (): ResponseBudget => ({ left: MAX_RESPONSE_BYTES });

export function charge(budget: ResponseBudget, text: string): string {
  budget.left -= Buffer.byteLength(text);
  if (budget.left < 0) throw new ResponseTooLargeError();
  return text;
}
