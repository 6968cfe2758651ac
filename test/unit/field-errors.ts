// The field messages a domain validator refuses with, for the unit tests' assertions.
import assert from 'node:assert/strict';
import { ValidationError } from '../../src/platform/errors.ts';

// The fields and messages of the ValidationError `validate` throws; {} when it accepts.
export function fieldErrors(validate: () => unknown): Record<string, string> {
  try {
    validate();
    return {};
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.fields;
  }
}
