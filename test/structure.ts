// The structure rules of src/, written down once and checked (test/structure.test.ts, so CI
// runs them with `npm test`; `node test/structure.ts` prints the same report):
//   - no import cycle, between files or between modules (a module is a folder of src/, or a
//     file directly in src/);
//   - a module imports only the modules its row of MODULES lists, each on its own layer or a
//     lower one, so nothing imports upwards;
//   - no file over MAX_FILE_LINES lines, no function over MAX_FUNCTION_LINES.
// Imports are read by the TypeScript parser (static imports, re-exports, `import()` and
// `typeof import()`), type-only ones included: a type couples modules as much as a value.
// src/ holds no generated code (the typed client's generated schema lives in clients/).
import { dirname, relative, resolve } from 'node:path';
import { type Node, type SourceFile, SyntaxKind } from 'typescript/unstable/ast';
import { API } from 'typescript/unstable/sync';

export const MAX_FILE_LINES = 400;
export const MAX_FUNCTION_LINES = 80;

// Lowest first: a module may use modules of its own layer or below, never above.
const LAYERS = ['base', 'platform', 'domain', 'transport', 'composition', 'entry'] as const;
export type Layer = (typeof LAYERS)[number];

// Every module, its layer and the modules it may import (and does: an entry nothing needs is
// reported too, so the table stays the map of src/). A new folder needs a row here.
const TABLE: Readonly<Record<string, readonly [Layer, string]>> = {
  version: ['base', ''],
  flags: ['base', ''],
  config: ['base', 'flags'],
  platform: ['platform', 'config flags version'],
  audit: ['domain', 'platform'],
  accounts: ['domain', 'audit platform tasks'],
  auth: ['domain', 'accounts audit config platform'],
  movies: ['domain', 'accounts config platform'],
  posters: ['domain', 'accounts config movies platform tasks'],
  products: ['domain', 'platform'],
  orders: ['domain', 'config payments platform products tasks'],
  settings: ['domain', 'accounts audit config platform'],
  tasks: ['domain', 'config platform'],
  callbacks: ['domain', 'config platform version'],
  // The external payment provider: its client, and a stand-in for it.
  payments: ['domain', 'config platform'],
  operations: ['domain', 'accounts callbacks config movies platform products version'],
  demo: ['domain', 'platform'],
  // The seed-002 API: its routes, envelope and error table over the products domain.
  'api-v1': ['transport', 'accounts audit auth orders platform products'],
  realtime: ['transport', 'accounts api-v1 auth config movies orders platform products tasks'],
  graphql: ['transport', 'accounts api-v1 config movies orders platform posters products settings'],
  // gRPC, gRPC-Web and Connect: the same use cases as REST, on a listener of its own.
  grpc: ['transport', 'accounts api-v1 auth config movies operations orders platform products realtime'],
  // Domain events to a message broker and commands from it, over the realtime outboxes and
  // the domain's use cases; nothing below imports it.
  broker: ['transport', 'accounts api-v1 auth config flags movies orders platform realtime'],
  app: [
    'composition',
    'accounts api-v1 auth broker config graphql grpc movies operations orders platform posters realtime settings',
  ],
  background: ['composition', 'accounts config orders payments platform posters realtime tasks'],
  cluster: ['composition', 'config platform'],
  prepare: ['composition', 'accounts config movies platform'],
  server: ['entry', 'accounts app auth background callbacks cluster config grpc platform prepare settings'],
  cli: [
    'entry',
    'accounts app audit auth background callbacks compile-cache config demo movies orders payments platform prepare server settings tasks version',
  ],
  // greenlight compile-cache: every module into Node's compile cache, as the primary and as
  // a worker (cluster.ts's V8 flags) load them.
  'compile-cache': ['entry', 'cluster'],
  main: ['entry', 'cli config platform'],
  // npm run docs:flags: writes the docs' flag table from the declarations.
  'flag-table': ['entry', 'config flags'],
};

export const MODULES: Modules = Object.fromEntries(
  Object.entries(TABLE).map(([name, [layer, uses]]) => [
    name,
    { layer, uses: uses.split(' ').filter(Boolean) },
  ]),
);

// Functions over the size limit, each with the reason it stays whole.
export const EXCEPTIONS: readonly Exception[] = [
  // Go's encoding/json scanner as one state machine: its offsets and the order of its errors
  // are the book's contract, and splitting the switch would spread one grammar over files.
  { file: 'src/platform/json-body.ts', rule: 'function size', name: 'scanValue' },
];

export type Rule = 'file cycle' | 'module cycle' | 'layer' | 'file size' | 'function size';
export type Modules = Readonly<Record<string, { layer: Layer; uses: readonly string[] }>>;
export type Exception = Readonly<{ file: string; rule: Rule; name?: string }>;
export type Violation = Readonly<{ rule: Rule; file: string; line: number; message: string }>;

type Import = Readonly<{ from: string; to: string; line: number }>;
type SrcFile = Readonly<{ path: string; lines: number; imports: Import[]; functions: FunctionSpan[] }>;
type FunctionSpan = Readonly<{ name: string; line: number; lines: number }>;

const FUNCTION_KINDS = new Set<SyntaxKind>([
  SyntaxKind.FunctionDeclaration,
  SyntaxKind.FunctionExpression,
  SyntaxKind.ArrowFunction,
  SyntaxKind.MethodDeclaration,
  SyntaxKind.Constructor,
  SyntaxKind.GetAccessor,
  SyntaxKind.SetAccessor,
]);

// The module of a file under src/: its folder, or its own name for a file directly in src/.
// Flag declarations (`*.flags.ts` beside each module, and their builders in platform/flags.ts)
// are one leaf module of their own: config.ts assembles them all, and every module reads its
// part of the assembled Config, so they must import nothing of the modules they sit beside.
export function moduleOf(path: string): string {
  if (path.endsWith('.flags.ts') || path === 'src/platform/flags.ts') return 'flags';
  const parts = relative('src', path).split('/');
  return parts.length === 1 ? (parts[0] as string).replace(/\.ts$/, '') : (parts[0] as string);
}

export function checkStructure(
  root: string,
  modules: Modules = MODULES,
  exceptions: readonly Exception[] = EXCEPTIONS,
): Violation[] {
  const files = readSources(root);
  const violations = [
    ...sizeViolations(files),
    ...layerViolations(files, modules),
    ...cycleViolations(files),
  ];
  const excused = (e: Exception, v: Violation) =>
    e.file === v.file && e.rule === v.rule && (e.name ?? '') === nameIn(v);
  // An exception nothing needs any more is reported, so that the list only ever shrinks.
  const stale = exceptions
    .filter((e) => !violations.some((v) => excused(e, v)))
    .map((e) => ({
      rule: e.rule,
      file: e.file,
      line: 1,
      message: `EXCEPTIONS (test/structure.ts) excuses ${e.name ?? 'the file'}, which keeps the rule now: remove the entry`,
    }));
  return [...violations.filter((v) => !exceptions.some((e) => excused(e, v))), ...stale];
}

// An exception for a function names it; the function's name is the message's first word.
function nameIn(violation: Violation): string {
  return violation.rule === 'function size' ? (violation.message.split(' ')[0] as string) : '';
}

function readSources(root: string): SrcFile[] {
  const api = new API({ cwd: root });
  try {
    const project = api.updateSnapshot({ openProjects: [resolve(root, 'tsconfig.json')] }).getProjects()[0];
    if (!project) throw new Error('tsconfig.json did not open');
    const src = resolve(root, 'src');
    return project.program
      .getSourceFileNames()
      .filter((name) => name.startsWith(`${src}/`))
      .sort()
      .map((name) => readSource(project.program.getSourceFile(name) as SourceFile, root));
  } finally {
    api.close();
  }
}

function readSource(file: SourceFile, root: string): SrcFile {
  const path = relative(root, file.fileName);
  const lineOf = (position: number) => file.getLineAndCharacterOfPosition(position).line + 1;
  const imports: Import[] = [];
  const functions: FunctionSpan[] = [];
  const addImport = (specifier: Node | undefined) => {
    if (specifier?.kind !== SyntaxKind.StringLiteral) return;
    const text = (specifier as Node & { text: string }).text;
    if (!text.startsWith('.')) return;
    const to = relative(root, resolve(dirname(file.fileName), text));
    if (to.startsWith('src/')) imports.push({ from: path, to, line: lineOf(specifier.getStart(file)) });
  };
  const visit = (node: Node): void => {
    if (node.kind === SyntaxKind.ImportDeclaration || node.kind === SyntaxKind.ExportDeclaration) {
      addImport((node as Node & { moduleSpecifier?: Node }).moduleSpecifier);
    } else if (node.kind === SyntaxKind.CallExpression) {
      const call = node as Node & { expression: Node; arguments: readonly Node[] };
      if (call.expression.kind === SyntaxKind.ImportKeyword) addImport(call.arguments[0]);
    } else if (node.kind === SyntaxKind.ImportType) {
      const argument = (node as Node & { argument: Node & { literal?: Node } }).argument;
      addImport(argument.literal);
    }
    if (FUNCTION_KINDS.has(node.kind)) {
      const line = lineOf(node.getStart(file));
      functions.push({ name: functionName(node), line, lines: lineOf(node.end) - line + 1 });
    }
    node.forEachChild(visit);
  };
  visit(file);
  return {
    path,
    lines: file.getLineStarts().length - (file.text.endsWith('\n') ? 1 : 0),
    imports,
    functions,
  };
}

// A function's own name, else the name it is assigned to or passed as (`const f = () => …`,
// `{ handler: () => … }`), else `(anonymous)`.
function functionName(node: Node): string {
  for (const candidate of [node, node.parent]) {
    const name = (candidate as Node & { name?: Node }).name;
    if (name && (name.kind === SyntaxKind.Identifier || name.kind === SyntaxKind.StringLiteral)) {
      return (name as Node & { text: string }).text;
    }
  }
  return '(anonymous)';
}

function sizeViolations(files: readonly SrcFile[]): Violation[] {
  const violations: Violation[] = [];
  for (const file of files) {
    if (file.lines > MAX_FILE_LINES) {
      violations.push({
        rule: 'file size',
        file: file.path,
        line: 1,
        message: `${file.lines} lines, over the limit of ${MAX_FILE_LINES}`,
      });
    }
    for (const fn of file.functions) {
      if (fn.lines <= MAX_FUNCTION_LINES) continue;
      violations.push({
        rule: 'function size',
        file: file.path,
        line: fn.line,
        message: `${fn.name} is ${fn.lines} lines, over the limit of ${MAX_FUNCTION_LINES}`,
      });
    }
  }
  return violations;
}

function layerViolations(files: readonly SrcFile[], modules: Modules): Violation[] {
  const violations: Violation[] = [];
  for (const [name, module] of Object.entries(modules)) {
    for (const used of module.uses) {
      const target = modules[used];
      if (!target || LAYERS.indexOf(target.layer) > LAYERS.indexOf(module.layer)) {
        violations.push({
          rule: 'layer',
          file: 'test/structure.ts',
          line: 1,
          message: `MODULES: ${name} (${module.layer}) lists ${used}, which is ${target ? `on the higher layer ${target.layer}` : 'not a module'}`,
        });
      }
    }
  }
  const used = new Set(files.flatMap((f) => f.imports.map((i) => `${moduleOf(i.from)} ${moduleOf(i.to)}`)));
  for (const [name, module] of Object.entries(modules)) {
    for (const target of module.uses.filter((t) => !used.has(`${name} ${t}`))) {
      violations.push({
        rule: 'layer',
        file: 'test/structure.ts',
        line: 1,
        message: `MODULES: ${name} lists ${target}, but no file of ${name} imports it`,
      });
    }
  }
  for (const file of files) {
    const from = moduleOf(file.path);
    const module = modules[from];
    if (!module) {
      violations.push({
        rule: 'layer',
        file: file.path,
        line: 1,
        message: `module ${from} has no row in MODULES (test/structure.ts)`,
      });
      continue;
    }
    for (const i of file.imports) {
      const to = moduleOf(i.to);
      if (to === from || module.uses.includes(to)) continue;
      const target = modules[to];
      const why =
        target && LAYERS.indexOf(target.layer) > LAYERS.indexOf(module.layer)
          ? `an upward import (${module.layer} → ${target.layer})`
          : `${to} is not among the modules ${from} may use`;
      violations.push({ rule: 'layer', file: file.path, line: i.line, message: `imports ${i.to}: ${why}` });
    }
  }
  return violations;
}

function cycleViolations(files: readonly SrcFile[]): Violation[] {
  const imports = files.flatMap((f) => f.imports);
  const violations: Violation[] = [];
  for (const cycle of cycles(imports.map((i) => [i.from, i.to]))) {
    const first = imports.find((i) => i.from === cycle[0] && i.to === cycle[1]) as Import;
    violations.push({
      rule: 'file cycle',
      file: first.from,
      line: first.line,
      message: `imports ${first.to}, which leads back: ${[...cycle, cycle[0]].join(' → ')}`,
    });
  }
  const between = imports.filter((i) => moduleOf(i.from) !== moduleOf(i.to));
  for (const cycle of cycles(between.map((i) => [moduleOf(i.from), moduleOf(i.to)]))) {
    const first = between.find((i) => moduleOf(i.from) === cycle[0] && moduleOf(i.to) === cycle[1]) as Import;
    violations.push({
      rule: 'module cycle',
      file: first.from,
      line: first.line,
      message: `imports ${first.to}, and module ${cycle[1]} leads back to ${cycle[0]}: ${[...cycle, cycle[0]].join(' → ')}`,
    });
  }
  return violations;
}

// One shortest cycle through each strongly connected group of the graph (Tarjan's algorithm
// for the groups, a breadth-first search inside a group for the cycle).
function cycles(edges: ReadonlyArray<readonly [string, string]>): string[][] {
  const next = new Map<string, Set<string>>();
  for (const [from, to] of edges) {
    if (!next.has(from)) next.set(from, new Set());
    next.get(from)?.add(to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const groups: string[][] = [];
  const connect = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node) as number);
    stack.push(node);
    for (const to of next.get(node) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(node, Math.min(low.get(node) as number, low.get(to) as number));
      } else if (stack.includes(to)) {
        low.set(node, Math.min(low.get(node) as number, index.get(to) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const group = stack.splice(stack.indexOf(node));
      if (group.length > 1 || next.get(node)?.has(node)) groups.push(group.sort());
    }
  };
  for (const node of [...next.keys()].sort()) if (!index.has(node)) connect(node);
  return groups.map((group) => shortestCycle(group[0] as string, new Set(group), next));
}

function shortestCycle(start: string, group: ReadonlySet<string>, next: Map<string, Set<string>>): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift() as string;
    for (const to of [...(next.get(node) ?? [])].sort()) {
      if (!group.has(to)) continue;
      if (to === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(cameFrom.get(path[0] as string) as string);
        return path;
      }
      if (!cameFrom.has(to)) {
        cameFrom.set(to, node);
        queue.push(to);
      }
    }
  }
  return [start];
}

export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line}: [${v.rule}] ${v.message}`;
}

if (import.meta.main) {
  const violations = checkStructure(resolve(import.meta.dirname, '..'));
  for (const v of violations) console.log(formatViolation(v));
  console.log(`${violations.length} structure violation(s)`);
  process.exitCode = violations.length > 0 ? 1 : 0;
}
