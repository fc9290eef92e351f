import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * client/ is what another project installs, and common/ is the pure code it shares with the server:
 * neither may reach into lib/ (the server, with its AWS clients) nor pull an AWS SDK client in. The
 * walk reads type-only imports too, since a type from lib/ would make the client's users compile the
 * server; the load check runs the client in a fresh node and lists every package it really loads,
 * the SDK's own dependencies included.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHARED = ['client', 'common'];
// import/export … from '…', import '…', import('…'), require('…'): every way a module names another.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(['"])([^'"]+)\1/g;
/** Bare specifiers the shared code may name: Node's own modules, and S3's CRCs (pure code). */
const ALLOWED_PACKAGE = /^(node:.+|@aws-sdk\/checksums\/crc)$/;
const SDK_CLIENT_CODE = /^(@aws-sdk\/(client-|lib-)|@smithy\/)/;
/** What the CRC module needs at run time (its checksum and serde parts of @smithy/core). */
const LOADED_PACKAGES = ['@aws-sdk/checksums', '@smithy/core', '@smithy/types'];

const sourceFiles = (folder: string): string[] =>
  readdirSync(join(root, folder), { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(root, folder, entry.name));

/** Every project file the shared folders reach through relative imports, and the packages they name. */
function walk(starts: string[]) {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const queue = [...starts];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|(^|[^:])\/\/.*$/gm, '$1');
    for (const [, , specifier] of text.matchAll(SPECIFIER)) {
      if (specifier!.startsWith('.')) queue.push(resolve(dirname(file), specifier!));
      else packages.set(specifier!, relative(root, file));
    }
  }
  return { files: [...files].map((file) => relative(root, file)), packages };
}

describe('client/ and common/ stand apart from the server', () => {
  const { files, packages } = walk(SHARED.flatMap(sourceFiles));

  it('reach no file outside client/ and common/', () => {
    expect(files.length).toBeGreaterThan(10);
    expect(files.filter((file) => !SHARED.some((folder) => file.startsWith(`${folder}/`)))).toEqual([]);
  });

  it('import no AWS SDK client, lib or smithy code, and no package but the CRCs', () => {
    const imported = [...packages].map(([name, file]) => `${name} (${file})`);
    expect(imported.filter((entry) => SDK_CLIENT_CODE.test(entry))).toEqual([]);
    expect([...packages.keys()].filter((name) => !ALLOWED_PACKAGE.test(name))).toEqual([]);
    // The walk must see the imports: none found would pass for the wrong reason.
    expect(packages.has('@aws-sdk/checksums/crc')).toBe(true);
  });

  it('load no package at run time but the CRCs and what they need', () => {
    const script = `
      import { registerHooks } from 'node:module';
      const loaded = new Set();
      registerHooks({ resolve(specifier, context, next) { const found = next(specifier, context); loaded.add(found.url); return found; } });
      await import(${JSON.stringify(join(root, 'client', 'index.ts'))});
      process.stdout.write(JSON.stringify([...loaded]));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(run.stderr).toBe('');
    const urls = JSON.parse(run.stdout) as string[];
    const packagesLoaded = new Set(
      urls.flatMap((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []),
    );
    expect([...packagesLoaded].sort()).toEqual(LOADED_PACKAGES);
    const projectFiles = urls
      .filter((url) => url.startsWith('file:') && !url.includes('/node_modules/'))
      .map((url) => relative(root, fileURLToPath(url)));
    expect(projectFiles.filter((file) => !SHARED.some((folder) => file.startsWith(`${folder}/`)))).toEqual(
      [],
    );
  });
});
