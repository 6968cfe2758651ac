// The CSV export's cells (src/movies/bulk.ts): RFC 4180 quoting and OWASP's neutralising of
// cells a spreadsheet would run as formulas, undone exactly by the import.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import { csvField, fromCsvCell } from '../../src/movies/bulk.ts';

// The one cell a CSV reader finds in `field`.
function read(field: string): string {
  const records = parse(`${field}\r\n`) as string[][];
  assert.equal(records.length, 1, field);
  assert.equal(records[0]?.length, 1, field);
  return records[0]?.[0] as string;
}

// Any text, weighted towards the characters the rules are about.
const cellText = fc.string({
  unit: fc.oneof(
    fc.constantFrom('=', '+', '-', '@', '\t', '\r', '\n', "'", '"', ','),
    fc.string({ minLength: 1, maxLength: 1 }),
  ),
});

test('when a cell starts like a formula, then a spreadsheet reads it as text behind a quote', () => {
  for (const text of ['=SUM(A1:A9)', '+1', '-1', '@cmd', '\tx', '\rx', "'=already"]) {
    const cell = read(csvField(text));
    assert.equal(cell, `'${text}`, JSON.stringify(text));
  }
});

test('when a cell is plain text or a number, then it is written as it is', () => {
  assert.equal(csvField('Arrival'), 'Arrival');
  assert.equal(csvField(2016), '2016');
  assert.equal(csvField("it's"), "it's");
});

test('when any text is exported and imported, then the import gives back exactly that text', () => {
  fc.assert(
    fc.property(cellText, (text) => {
      assert.equal(fromCsvCell(read(csvField(text))), text);
    }),
  );
});

test('when any text is exported, then the cell a reader sees never starts with a formula character', () => {
  fc.assert(
    fc.property(cellText, (text) => {
      assert.doesNotMatch(read(csvField(text)), /^[=+\-@\t\r]/);
    }),
  );
});
