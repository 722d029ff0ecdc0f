// lib/ has no import cycles: every relative import, export-from and require() of lib/**/*.ts (type-only ones too)
// resolves to a file, and the graph they make is acyclic; a cycle fails naming its files in order.
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const lib = path.join(root, 'lib');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

// Comments are removed first so that an example in a doc comment is not an edge.
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

const SPECIFIERS = [
  /\b(?:import|export)\s+(?:type\s+)?[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g, // import / export ... from '...'
  /\bimport\s*['"]([^'"]+)['"]/g, // import '...'
  /\b(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g, // require('...'), import('...')
];

/** The relative module specifiers a source file imports, in order. */
function relativeImports(source: string): string[] {
  const text = withoutComments(source);
  return SPECIFIERS.flatMap((pattern) => [...text.matchAll(pattern)].map((m) => m[1])).filter((s) => s.startsWith('.'));
}

function resolve(from: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(from), specifier);
  return [`${base}.ts`, path.join(base, 'index.ts')].find((file) => fs.existsSync(file));
}

/** The import graph: each file's resolved imports; throws naming an import that resolves to no file. */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const edges = relativeImports(fs.readFileSync(file, 'utf8')).map((specifier) => {
      const target = resolve(file, specifier);
      if (target === undefined) throw new Error(`${path.relative(root, file)}: '${specifier}' resolves to no .ts file`);
      return target;
    });
    graph.set(file, [...new Set(edges)]);
  }
  return graph;
}

/** One cycle of the graph as a path that starts and ends at the same file, or undefined when there is none. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): string[] | undefined => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (state.get(next) === undefined) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(file, 'done');
    return undefined;
  };
  for (const file of [...graph.keys()].sort()) {
    if (state.get(file) === undefined) {
      const cycle = visit(file);
      if (cycle) return cycle;
    }
  }
  return undefined;
}

const describeCycle = (cycle: string[]) => cycle.map((file) => path.relative(lib, file)).join(' -> ');

describe('the import graph of lib/', () => {
  const files = tsFiles(lib);
  const graph = importGraph(files);

  it('reads every kind of import, type-only ones included', () => {
    const source = [
      "import { a } from './a';",
      "import type { B } from '../b';",
      'import {\n  c,\n  type D,\n} from "./c";',
      "import * as e from './e';",
      "import './f';",
      "export { g } from './g';",
      "export type { H } from './h';",
      "export * from './i';",
      "const j = require('./j');",
      "import { k } from 'node-package';",
      "// import { l } from './l';",
      "/** import { m } from './m'; */",
    ].join('\n');
    expect(relativeImports(source).sort()).toEqual(['../b', './a', './c', './e', './f', './g', './h', './i', './j']);
  });

  it('finds a cycle and names it', () => {
    const a = path.join(lib, 'a.ts');
    const b = path.join(lib, 'x', 'b.ts');
    const c = path.join(lib, 'c.ts');
    const cyclic = new Map([[a, [b]], [b, [c]], [c, [b]]]);
    expect(describeCycle(findCycle(cyclic)!)).toBe(['x/b.ts', 'c.ts', 'x/b.ts'].join(' -> '));
    expect(findCycle(new Map([[a, [b, c]], [b, [c]], [c, []]]))).toBeUndefined();
  });

  it('covers the whole of lib/ and its imports', () => {
    expect(files.length).toBeGreaterThan(40);
    expect(graph.get(path.join(lib, 'index.ts'))!.length).toBeGreaterThan(15);
  });

  it('has no cycle', () => {
    const cycle = findCycle(graph);
    if (cycle) throw new Error(`import cycle in lib/: ${describeCycle(cycle)}`);
  });
});
