import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type BrowserContext, chromium } from 'playwright-core';

/**
 * What the browser tests share (tests/browser/): Debian's Chromium driven by playwright-core, a
 * static server for the pages under test, esbuild bundles of them, and the folder for screenshots.
 */

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Debian's chromium (apt-get install chromium; .ci/run installs it); CHROMIUM_PATH to use another. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const hasChromium = () => existsSync(CHROMIUM_PATH);

/** Screenshots and other artifacts of the browser tests: CI keeps this folder (gitignored). */
export function artifactsDir(): string {
  const dir = resolve(projectRoot, process.env.CI_ARTIFACTS_DIR ?? '.ci/artifacts', 'browser');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Flags that keep Chromium quiet on a closed network (TOOLCHAIN.md, "Browsers"): without the
 * background-networking ones it keeps opening connections the network refuses.
 */
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A headless Chromium with a fresh profile (removed on close). */
export async function launchBrowser(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'file-jobs-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: FLAGS,
    viewport: { width: 1000, height: 700 },
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Bundles a browser entry (TypeScript or JavaScript source) into one IIFE script. */
export async function bundle(source: string, resolveDir = projectRoot): Promise<string> {
  const result = await build({
    stdin: { contents: source, resolveDir, loader: 'ts', sourcefile: 'page-entry.ts' },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: false,
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

export interface StaticServer {
  url: string;
  close: () => Promise<void>;
}

/** Serves `files` (path -> body) on 127.0.0.1 at a free port: the origin of the page under test. */
export async function serveStatic(files: Record<string, { body: string | Uint8Array; type: string }>) {
  const server: Server = createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((done) => server.close(() => done())),
  } satisfies StaticServer;
}

/**
 * The fenced code block of README.md that follows the HTML comment `<!-- name -->`: README examples
 * that a test runs, so that they never drift from the code.
 */
export function readmeBlock(name: string): string {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  const match = new RegExp(`<!-- ${name} -->\\s*\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!match) throw new Error(`README.md has no code block marked <!-- ${name} -->`);
  return match[1]!;
}

/**
 * The README's Uppy snippet (`<!-- uppy-snippet -->`: `@uppy/aws-s3` through the Companion routes,
 * a Bearer token from sessionStorage) with `apiUrl` in it, followed by tests/browser/uppy.page.ts (a
 * harness that drives Uppy and records what it saw), as one HTML page and its script, to serve.
 */
export async function uppySnippetPage(apiUrl: string): Promise<{ html: string; script: string }> {
  const snippet = readmeBlock('uppy-snippet');
  const apiLine = /^const API = '[^']*';.*$/m;
  if (!apiLine.test(snippet))
    throw new Error("the README's Uppy snippet no longer has a `const API = '…'` line");
  const harness = readFileSync(join(projectRoot, 'tests', 'browser', 'uppy.page.ts'), 'utf8');
  const script = await bundle(
    `${snippet.replace(apiLine, `const API = ${JSON.stringify(apiUrl)};`)}\n${harness}`,
  );
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Uppy → file-jobs</title>
<style>body{font:16px system-ui;margin:2rem}progress{width:100%;height:1.5rem}</style></head>
<body><h1>Uppy → file-jobs (Companion routes)</h1><progress max="1" value="0"></progress>
<p id="status">no file yet</p><script src="/page.js"></script></body></html>`;
  return { html, script };
}
