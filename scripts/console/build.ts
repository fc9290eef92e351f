import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, transform } from 'esbuild';

/**
 * Builds the web console (web/) into one self-contained HTML page: the script bundled and minified
 * by esbuild (Uppy's core, Dashboard and S3 plugin, and the page's code), Uppy's CSS and the page's
 * own inlined, so that GET / is one answer with nothing else to fetch. The console function imports
 * it through the esbuild plugin next to this file, so every bundle of it (serverless-offline,
 * `serverless package`) holds the page of its sources; no built file is kept in the repository.
 * Nothing secret goes in: the page learns everything from the API on its own origin.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const web = join(root, 'web');

export interface ConsolePage {
  html: string;
  /** The CSP source expression for the page's one inline script. */
  scriptHash: string;
  /** Files the page is built from (for esbuild's watch mode). */
  inputs: string[];
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

export async function buildConsolePage(): Promise<ConsolePage> {
  const entry = join(web, 'console.page.ts');
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    define: { 'process.env.NODE_ENV': '"production"' },
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  // `</script` inside the script would end the element early; `<\/script` means the same in JS.
  const script = result.outputFiles[0]!.text.replace(/<\/(script)/gi, '<\\/$1').trim();
  const cssFiles = [
    join(root, 'node_modules/@uppy/core/dist/style.min.css'),
    join(root, 'node_modules/@uppy/dashboard/dist/style.min.css'),
    join(web, 'console.css'),
  ];
  const css = (
    await transform(cssFiles.map((file) => readFileSync(file, 'utf8')).join('\n'), {
      loader: 'css',
      minify: true,
      legalComments: 'none',
    })
  ).code
    .replace(/<\/(style)/gi, '<\\/$1')
    .trim();
  const template = readFileSync(join(web, 'console.html'), 'utf8');
  const html = template.replace('/*STYLE*/', () => css).replace('/*SCRIPT*/', () => script);
  return {
    html,
    scriptHash: sha256(script),
    inputs: [
      join(web, 'console.html'),
      ...cssFiles,
      ...Object.keys(result.metafile.inputs).map((input) => resolve(root, input)),
    ],
  };
}

// `node scripts/console/build.ts [out.html]`: the page and its sizes, to look at without the stack.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { gzipSync } = await import('node:zlib');
  const { writeFileSync } = await import('node:fs');
  const page = await buildConsolePage();
  const out = process.argv[2];
  if (out) writeFileSync(out, page.html);
  const raw = Buffer.byteLength(page.html);
  console.log(`console page: ${raw} bytes, ${gzipSync(page.html, { level: 9 }).length} gzipped`);
}
