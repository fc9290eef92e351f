/**
 * Bundles the CLI into one plain-JavaScript file, cli/dist/file-jobs.mjs (commander and cli-progress
 * inside), the package's `bin`: Node strips TypeScript types only outside node_modules, so an
 * installed copy of this package could not run cli/main.ts itself.
 *
 *   node cli/build.ts [--outfile <path>] [--if-possible]
 *
 * `--if-possible` (used by `prepare`) skips quietly when esbuild is not installed (npm ci --omit=dev).
 */
import { chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    outfile: { type: 'string', default: join(here, 'dist', 'file-jobs.mjs') },
    'if-possible': { type: 'boolean', default: false },
  },
});

let esbuild: typeof import('esbuild');
try {
  esbuild = await import('esbuild');
} catch (error) {
  if (values['if-possible']) {
    console.error('build:cli skipped: esbuild is not installed (use `npm run cli` or `node cli/main.ts`)');
    process.exit(0);
  }
  throw error;
}

const outfile = values.outfile!;
await esbuild.build({
  entryPoints: [join(here, 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
  // The entry point's own `#!/usr/bin/env node` line is kept by esbuild.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
});
chmodSync(outfile, 0o755);
console.error(`built ${outfile}`);
