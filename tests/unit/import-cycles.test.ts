import {
  type Dirent,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * No import circle among the project's own modules, type-only imports included: a circle makes the
 * order modules initialise in depend on which one is loaded first, and keeps two modules from being
 * understood (or bundled) apart. A plain walk of relative specifiers is enough here, since the code
 * imports its own files only by relative paths with their `.ts`/`.cjs` extension.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FOLDERS = ['lib', 'functions', 'client', 'cli', 'common'];
const SOURCE = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;
// import/export ... from '…', import '…', import('…'), require('…'): every way a module names another.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(['"])(\.{1,2}\/[^'"]+)\1/g;

function sourceFiles(folder: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(folder, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory())
      return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(path);
    return SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of each file, resolved to files that exist among `files`. */
function importGraph(files: string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    // Comments may quote an import (`import … from './x.ts'` in a doc comment): drop them first.
    const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|(^|[^:])\/\/.*$/gm, '$1');
    const targets = new Set<string>();
    for (const match of text.matchAll(SPECIFIER)) {
      const target = resolve(dirname(file), match[2]!);
      for (const candidate of [target, `${target}.ts`, join(target, 'index.ts')]) {
        if (known.has(candidate)) {
          targets.add(candidate);
          break;
        }
      }
    }
    graph.set(file, [...targets]);
  }
  return graph;
}

/** Every import circle, each once, as the list of files around it (Tarjan's strongly connected components). */
function importCycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      const selfImport = (graph.get(node) ?? []).includes(node);
      if (component.length > 1 || selfImport) cycles.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

const cyclesUnder = (base: string, folders: string[]) =>
  importCycles(importGraph(folders.flatMap((folder) => sourceFiles(join(base, folder))))).map((cycle) =>
    cycle.map((file) => relative(base, file)),
  );

describe('import circles', () => {
  it(`there are none among ${FOLDERS.join(', ')}`, () => {
    const files = FOLDERS.flatMap((folder) => sourceFiles(join(root, folder)));
    // The walk must see the code: an empty or tiny graph would pass for the wrong reason.
    expect(files.length).toBeGreaterThan(100);
    expect(cyclesUnder(root, FOLDERS)).toEqual([]);
  });

  describe('the check itself', () => {
    let base: string;
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(base, path)), { recursive: true });
      writeFileSync(join(base, path), text);
    };
    beforeEach(() => {
      base = mkdtempSync(join(tmpdir(), 'import-cycles-'));
    });
    afterEach(() => rmSync(base, { recursive: true, force: true }));

    it('finds a circle made of a type-only import across folders', () => {
      write('lib/auth/authenticate.ts', "import type { HttpEvent } from '../http/route.ts';\n");
      write(
        'lib/http/route.ts',
        "import { authenticate } from '../auth/authenticate.ts';\nexport type HttpEvent = {};\n",
      );
      write('lib/http/types.ts', 'export type Caller = {};\n');
      expect(cyclesUnder(base, ['lib'])).toEqual([['lib/auth/authenticate.ts', 'lib/http/route.ts']]);
    });

    it('finds longer circles, re-exports, dynamic imports and require, but not comments or packages', () => {
      write('lib/a.ts', "export * from './b.ts';\n");
      write('lib/b.ts', "const c = await import('./c.ts');\n");
      write('functions/c.ts', "// import { a } from '../lib/a.ts';\nimport middy from '@middy/core';\n");
      expect(cyclesUnder(base, ['lib', 'functions'])).toEqual([]);
      write('lib/c.ts', "const { a } = require('./a.ts');\n");
      expect(cyclesUnder(base, ['lib'])).toEqual([['lib/a.ts', 'lib/b.ts', 'lib/c.ts']]);
    });
  });
});
