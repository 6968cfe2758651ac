// The rows of bench/results.md (full runs: every scenario) and bench/partial-results.md
// (runs of a subset): how a run's figures are written into a row's cells, read back from
// them, and compared with the last full row of the same settings, so that every run shows
// what moved since, and a fall nobody was looking for is seen.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

// Every scenario, in the order of the row's columns. A run that measured each is full.
export const SCENARIOS = [
  'S1',
  'S2',
  'Q1',
  'S3',
  'S4',
  'S5',
  'S6',
  'S7',
  'S8',
  'P1',
  'W1',
  'G1',
  'L1',
  'L2',
  'R1',
  'B1',
  'E1',
  'A1',
  'C1',
] as const;

// A figure's change beyond this share, the wrong way, is flagged.
export const FLAG_PERCENT = 15;

// `template` is how the figure reads in a cell, `{v}` its value; `unit` is added on the console.
type Metric = Readonly<{ key: string; template: string; unit?: string; better: 'higher' | 'lower' }>;

const LATENCY: readonly Metric[] = [
  { key: 'p50', template: 'p50 {v}', unit: ' ms', better: 'lower' },
  { key: 'p99', template: 'p99 {v}', unit: ' ms', better: 'lower' },
];
const LOAD: readonly Metric[] = [{ key: 'rps', template: '{v} req/s', better: 'higher' }, ...LATENCY];
export const RSS_COLUMN = 'RSS MiB';

function metricsOf(column: string): readonly Metric[] {
  if (column === 'B1')
    return [
      { key: 'import', template: 'import {v} rows/s', better: 'higher' },
      { key: 'export', template: 'export {v} rows/s', better: 'higher' },
    ];
  if (column === 'E1')
    return [{ key: 'delivered', template: 'delivered {v} %', better: 'higher' }, ...LATENCY];
  if (column === 'A1') return [{ key: 'events', template: '{v} events/s', better: 'higher' }, ...LATENCY];
  if (column === 'C1')
    return [{ key: 'accepted', template: '{v} callbacks/s', better: 'higher' }, ...LATENCY];
  if (column === RSS_COLUMN)
    return ['primary', 'worker', 'service'].flatMap((who) => [
      { key: `${who}_peak`, template: `${who} peak {v}`, unit: ' MiB', better: 'lower' as const },
      { key: `${who}_end`, template: `${who} end {v}`, unit: ' MiB', better: 'lower' as const },
    ]);
  return LOAD;
}

// A scenario's (or the RSS column's) figures by metric key.
export type Figures = Record<string, number>;

function formatCell(column: string, figures: Figures | undefined): string {
  if (!figures) return '–';
  return metricsOf(column)
    .filter((m) => figures[m.key] !== undefined)
    .map((m) => m.template.replace('{v}', String(figures[m.key])))
    .join(', ');
}

function parseCell(column: string, cell: string): Figures | undefined {
  if (cell === '–' || cell === '') return undefined;
  const figures: Figures = {};
  for (const part of cell.split(', ')) {
    for (const m of metricsOf(column)) {
      const [before, after] = m.template.split('{v}') as [string, string];
      if (part.startsWith(before) && part.endsWith(after)) {
        const value = Number(part.slice(before.length, part.length - after.length));
        if (Number.isFinite(value)) figures[m.key] = value;
      }
    }
  }
  return figures;
}

export type Row = Readonly<{
  date: string;
  commit: string;
  // the options that make two runs comparable: workers, connections, tracing, any scenario
  // option not at its default
  settings: string;
  machine: string;
  durationSeconds: number;
  baselineRps: number;
  figures: Readonly<Record<string, Figures>>; // by column: a scenario or RSS_COLUMN
}>;

const COLUMNS = [
  'date',
  'commit',
  'settings',
  'machine, load',
  's',
  'baseline req/s',
  ...SCENARIOS,
  RSS_COLUMN,
];
const HEADER = `| ${COLUMNS.join(' | ')} |`;
const SEPARATOR = `|${COLUMNS.map(() => '---|').join('')}`;
const TABLE_START = '| date | commit | settings |';

const cellText = (text: string) => text.replace(/\|/g, '/').replace(/\s+/g, ' ');

function formatRow(row: Row): string {
  const cells = [
    row.date,
    row.commit,
    row.settings,
    row.machine,
    String(row.durationSeconds),
    String(row.baselineRps),
    ...SCENARIOS.map((s) => formatCell(s, row.figures[s])),
    formatCell(RSS_COLUMN, row.figures[RSS_COLUMN]),
  ];
  return `| ${cells.map(cellText).join(' | ')} |`;
}

// Every row of every table of this layout in `text`, each read by its own table's header,
// with whether it has a figure in each scenario column that header has.
function rowsIn(text: string): { row: Row; full: boolean }[] {
  const found: { row: Row; full: boolean }[] = [];
  let header: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith(TABLE_START)) {
      header = line.slice(2, -2).split(' | ');
      continue;
    }
    if (!header || line.startsWith('|---')) continue;
    if (!line.startsWith('| ')) {
      header = undefined;
      continue;
    }
    const cells = line.slice(2, -2).split(' | ');
    const at = (name: string) => cells[header?.indexOf(name) ?? -1] ?? '';
    const figures: Record<string, Figures> = {};
    let full = true;
    for (const column of header) {
      const isScenario = (SCENARIOS as readonly string[]).includes(column) || /^[A-Z]\d$/.test(column);
      if (!isScenario && column !== RSS_COLUMN) continue;
      const parsed = parseCell(column, at(column));
      if (parsed) figures[column] = parsed;
      else if (isScenario) full = false;
    }
    found.push({
      row: {
        date: at('date'),
        commit: at('commit'),
        settings: at('settings'),
        machine: at('machine, load'),
        durationSeconds: Number(at('s')),
        baselineRps: Number(at('baseline req/s')),
        figures,
      },
      full,
    });
  }
  return found;
}

// The last full row of `file` measured with `settings`.
export function lastFullRow(file: string, settings: string): Row | undefined {
  if (!existsSync(file)) return undefined;
  return rowsIn(readFileSync(file, 'utf8'))
    .filter((r) => r.full && r.row.settings === cellText(settings))
    .at(-1)?.row;
}

// Appends `row` to `file`, starting a table (and the file, with `intro`) when the file's last
// table has other columns than this benchmark writes now.
export function appendRow(file: string, row: Row, intro: string): void {
  if (!existsSync(file)) writeFileSync(file, intro);
  const lines = readFileSync(file, 'utf8').split('\n');
  const lastHeader = lines.filter((l) => l.startsWith(TABLE_START)).at(-1);
  const lastLine = lines.filter((l) => l !== '').at(-1) ?? '';
  // A new table, also after prose written below the last one.
  if (lastHeader !== HEADER || !lastLine.startsWith('| '))
    appendFileSync(file, `\n${HEADER}\n${SEPARATOR}\n`);
  appendFileSync(file, `${formatRow(row)}\n`);
}

export type Change = { text: string; worse: boolean };

// How `now` compares with `before` for one metric: ▲/▼ and the percentage, flagged with ! when
// it moved more than FLAG_PERCENT the wrong way.
function change(metric: Metric, now: number, before: number | undefined): Change | undefined {
  if (before === undefined || before === 0) return undefined;
  const percent = ((now - before) / before) * 100;
  const rounded = Math.round(percent);
  const worse = metric.better === 'higher' ? percent < -FLAG_PERCENT : percent > FLAG_PERCENT;
  const arrow = rounded > 0 ? '▲' : rounded < 0 ? '▼' : '=';
  return { text: `${arrow} ${rounded > 0 ? '+' : ''}${rounded} %${worse ? ' !' : ''}`, worse };
}

// `figures` of `column` as console text, each followed by its change against `before`; the
// names of the metrics flagged go to `flagged`.
export function describe(
  column: string,
  figures: Figures,
  before: Figures | undefined,
  flagged: string[],
): string {
  return metricsOf(column)
    .filter((m) => figures[m.key] !== undefined)
    .map((m) => {
      const value = figures[m.key] as number;
      const text = m.template.replace('{v}', `${value}${m.unit ?? ''}`);
      const moved = change(m, value, before?.[m.key]);
      if (moved?.worse)
        flagged.push(
          `${column === RSS_COLUMN ? 'RSS' : column} ${m.template.replace(/\s*\{v\}\s*/, ' ').trim()}`,
        );
      return moved ? `${text} (${moved.text})` : text;
    })
    .join(', ');
}
