// The docs' table of flags, generated from the modules' declarations (config.ts's FLAGS), so
// that a flag is described once. `npm run docs:flags` rewrites the table in whichever of
// README.md and docs/*.md holds it (its rows start with a backticked -flag);
// test/flag-table.test.ts fails when the table is stale.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLAGS } from './config.ts';
import { envName } from './platform/flags.ts';

const ROW = /^\| `-[a-z0-9-]+` \|/;

export function flagTableRows(): string[] {
  return FLAGS.map((f) => {
    const shown = f.shownDefault ?? (f.default === '' ? '*(empty)*' : `\`${f.default}\``);
    const runtime = f.runtime ? ' *(runtime setting: `config set`)*' : '';
    return `| \`-${f.name}\` | \`${envName(f.name)}\` | ${shown} | ${f.help}${runtime} |`;
  });
}

export type DocTable = Readonly<{ file: string; lines: readonly string[]; start: number; end: number }>;

// The one markdown file with flag rows, and where its rows are (lines start to end - 1).
export function findFlagTable(root: string): DocTable {
  const files = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  const found: DocTable[] = [];
  for (const file of files) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    const start = lines.findIndex((line) => ROW.test(line));
    if (start === -1) continue;
    let end = start;
    while (end < lines.length && ROW.test(lines[end] ?? '')) end++;
    if (lines.slice(end).some((line) => ROW.test(line)))
      throw new Error(`${file} has flag rows apart from its table`);
    found.push({ file, lines, start, end });
  }
  const [table, ...others] = found;
  if (!table || others.length > 0) {
    throw new Error(
      `expected one flag table in README.md or docs/*.md, found ${found.map((t) => t.file).join(', ') || 'none'}`,
    );
  }
  return table;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const { file, lines, start, end } = findFlagTable(root);
  writeFileSync(
    join(root, file),
    [...lines.slice(0, start), ...flagTableRows(), ...lines.slice(end)].join('\n'),
  );
  console.log(`wrote the flag table of ${file}`);
}
