// The book's validator: collect the first failing message per field, then fail with all
// of them at once (422).
import { type FieldErrors, ValidationError } from './errors.ts';

export class Validator {
  readonly errors: FieldErrors = {};

  check(ok: boolean, field: string, message: string): void {
    if (!ok && !(field in this.errors)) this.errors[field] = message;
  }

  assertValid(): void {
    if (Object.keys(this.errors).length > 0) throw new ValidationError(this.errors);
  }
}

// PostgreSQL's text cannot hold U+0000: a string with it is refused before it reaches SQL.
export const NUL_MESSAGE = 'must not contain the NUL character';

export function isStorable(text: string): boolean {
  return !text.includes('\u0000');
}

export function isUnique(values: readonly string[]): boolean {
  return new Set(values).size === values.length;
}
