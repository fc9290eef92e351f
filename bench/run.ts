/**
 * `npm run bench`: every benchmark, one after another (each starts its own local stack and prints
 * its own summary with the machine and the load); `npm run bench -- upload routes` runs those only.
 * Arguments after `--` that start with `--` are passed to each bench (`npm run bench -- export
 * --size-mib 512`). Benchmarks measure; no test runs them.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHES = ['upload', 'export', 'export-worker', 'routes', 'route-stack', 'signin', 'console'] as const;

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const firstOption = args.findIndex((arg) => arg.startsWith('--'));
const names = firstOption === -1 ? args : args.slice(0, firstOption);
const options = firstOption === -1 ? [] : args.slice(firstOption);
const unknown = names.filter((name) => !(BENCHES as readonly string[]).includes(name));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(', ')}; the benches: ${BENCHES.join(', ')}`);
  process.exit(2);
}

let failed = 0;
for (const name of names.length > 0 ? names : BENCHES) {
  console.log(`\n== bench/${name}.ts ${options.join(' ')}`);
  const run = spawnSync(process.execPath, [join(here, `${name}.ts`), ...options], { stdio: 'inherit' });
  if (run.status !== 0) {
    console.error(`bench/${name}.ts exited ${run.status ?? run.signal}`);
    failed++;
  }
}
process.exitCode = failed > 0 ? 1 : 0;
