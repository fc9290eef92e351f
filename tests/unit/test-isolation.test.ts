import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { janitorOver } from '../support/janitor.ts';

/**
 * The stack's test files run side by side on one stack (jest.config.js). Their jobs are made to look
 * stale on purpose, so a janitor that swept every active job would expire, restart or fail another
 * file's jobs mid-test: a failure that shows only now and then, and never in the file that caused it.
 * So the tests run the janitor only through tests/support/janitor.ts, which narrows it to the
 * test's own users. And the export worker, which tests drive in-process, only through
 * tests/support/exports.ts, which runs it as its function, so the IAM check covers its calls.
 */

const root = join(import.meta.dirname, '..', '..');
const HELPER = 'tests/support/janitor.ts';
const EXPORT_HELPER = 'tests/support/exports.ts';

function testSources(dir = join(root, 'tests')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testSources(path);
    return entry.name.endsWith('.ts') ? [relative(root, path).replaceAll('\\', '/')] : [];
  });
}

describe('tests that share the stack', () => {
  it('run the janitor only through the helper that narrows it to their users', () => {
    const sources = testSources();
    expect(sources).toContain(HELPER);
    const offenders = sources.filter(
      (file) =>
        file !== HELPER &&
        file !== 'tests/unit/test-isolation.test.ts' &&
        /\brunJanitor\b/.test(readFileSync(join(root, file), 'utf8')),
    );
    expect(offenders).toEqual([]);
  });

  it('run the export worker only as the exportWorker function, for the IAM check', () => {
    const offenders = testSources().filter(
      (file) =>
        file !== EXPORT_HELPER &&
        file !== 'tests/unit/test-isolation.test.ts' &&
        /\brunExport\b/.test(readFileSync(join(root, file), 'utf8')),
    );
    expect(offenders).toEqual([]);
    expect(readFileSync(join(root, EXPORT_HELPER), 'utf8')).toMatch(
      /asFunction\('exportWorker', \(\) => runExport\(/,
    );
  });

  it('refuse a janitor over folders other than their users', async () => {
    await expect(janitorOver('alice', { settings: { prefixes: ['uploads/'] } })).rejects.toThrow(
      /uploads\/ is outside the folders of alice/,
    );
    await expect(
      janitorOver(['alice', 'bob'], { settings: { prefixes: ['exports/bob/', 'uploads/carol/'] } }),
    ).rejects.toThrow(/^janitorOver: uploads\/carol\/ is outside/);
  });
});
