import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The benches run under plain Node (`npm run bench`), never under Jest, and some borrow the tests'
 * helpers. A helper that starts importing Jest's globals loads fine in every test and breaks the
 * bench that uses it, which no test runs (bench/export-worker.ts was broken so for a session). So
 * every module of this repository a bench imports is loaded here the way the bench loads it.
 */

const root = join(import.meta.dirname, '..', '..');
const benchDir = join(root, 'bench');

/** The project's own modules each bench imports (static or dynamic), as paths from the root. */
function benchImports(): string[] {
  const found = new Set<string>();
  for (const file of readdirSync(benchDir).filter((name) => name.endsWith('.ts'))) {
    const text = readFileSync(join(benchDir, file), 'utf8');
    for (const match of text.matchAll(/(?:from|import\()\s*'(\.\.\/[^']+\.ts)'/g)) {
      found.add(join('bench', match[1]!).replaceAll('\\', '/'));
    }
  }
  return [...found].sort();
}

describe('bench imports', () => {
  const modules = benchImports();

  it('finds the helpers the benches borrow from the tests', () => {
    expect(modules).toEqual(expect.arrayContaining(['tests/support/exports.ts', 'tests/support/events.ts']));
  });

  it('loads every one of them under plain Node, as `npm run bench` does', () => {
    const script = `await Promise.all(${JSON.stringify(modules.map((module) => `./${module}`))}.map((m) => import(m)));`;
    // Throws (with the child's stderr) when any module fails to load.
    execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      stdio: 'pipe',
      timeout: 60_000,
    });
  }, 90_000);
});
