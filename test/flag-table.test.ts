// The docs' flag table is the declarations' own: every declared flag has its row with its
// environment twin, default and help, and no row names a flag that does not exist.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FLAGS } from '../src/config.ts';
import { findFlagTable, flagTableRows } from '../src/flag-table.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('when the docs flag table is compared with the declared flags, then it is current (else: npm run docs:flags)', () => {
  const { file, lines, start, end } = findFlagTable(ROOT);
  const rows = lines.slice(start, end);
  const named = rows.map((row) => row.split('`')[1]);
  const declared = FLAGS.map((f) => `-${f.name}`);
  assert.deepEqual(
    named.filter((name) => !declared.includes(name ?? '')),
    [],
    `${file} names flags that are not declared`,
  );
  assert.deepEqual(
    declared.filter((name) => !named.includes(name)),
    [],
    `${file} leaves out declared flags`,
  );
  // Row by row, so that a failure shows the one stale row rather than the whole table.
  for (const [i, row] of flagTableRows().entries()) {
    assert.equal(rows[i], row, `the flag table of ${file} is stale: run \`npm run docs:flags\``);
  }
  assert.equal(rows.length, FLAGS.length, `${file} lists a flag twice`);
});
