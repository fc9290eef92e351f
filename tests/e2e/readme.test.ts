import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEMO_USER } from '../../scripts/local-stack.ts';
import { readmeBlock } from '../support/browser.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The README's quick start (`<!-- quickstart -->`), run by bash as it is written, against the test
 * stack and as a fresh user (so that its kill meets no other test's uploads): what it prints must be
 * its `# -> ` lines, in order, and a second run in the same folder must print the same (the examples
 * reproduce: `overwrite` replaces the files of the first run).
 */

const run = promisify(execFile);

it('runs the quick start twice in a row, printing what the README says', async () => {
  const block = readmeBlock('quickstart');
  const user = await createTestUser('readme');
  const apiLine = /^API=http:\/\/127\.0\.0\.1:3000$/m;
  expect(block).toMatch(apiLine);
  expect(block).toContain(`"username":"${DEMO_USER.username}","password":"${DEMO_USER.password}"`);
  const script = block
    .replace(apiLine, `API=${testStack().apiUrl}`)
    .replace(
      `"username":"${DEMO_USER.username}","password":"${DEMO_USER.password}"`,
      `"username":"${user.username}","password":"${user.password}"`,
    );
  const expected = block
    .split('\n')
    .filter((line) => line.startsWith('# -> '))
    .map((line) => line.slice('# -> '.length));
  expect(expected.length).toBeGreaterThan(5);

  const dir = mkdtempSync(join(tmpdir(), 'file-jobs-readme-'));
  try {
    for (let round = 1; round <= 2; round++) {
      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir, timeout: 60_000 });
      expect({ round, lines: stdout.trimEnd().split('\n') }).toEqual({ round, lines: expected });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 150_000);
