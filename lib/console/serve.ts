import { gzipSync } from 'node:zlib';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

export interface ConsolePage {
  html: string;
  scriptHash: string;
}

/**
 * Where the page may send requests: its own origin (the API), and S3, where Uppy PUTs the parts with
 * presigned URLs: the emulator's endpoint locally, any S3 endpoint of AWS otherwise.
 */
function s3Origins(): string {
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (!endpoint) return 'https://*.amazonaws.com';
  try {
    return new URL(endpoint).origin;
  } catch {
    return 'https://*.amazonaws.com';
  }
}

/**
 * The console's answer: the page, gzipped for clients that take it (API Gateway does not compress; the
 * page is about 351 KB, 102 KB gzipped), with a Content-Security-Policy that runs only the page's own inline
 * script (by hash), talks to nothing but the API and S3, and cannot be framed.
 */
export function consoleResponder(page: ConsolePage) {
  let gzipped: string | undefined;
  // The same for every request: built once per container.
  const headers = {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': [
      "default-src 'none'",
      // 'wasm-unsafe-eval' lets the page compile WebAssembly (hash-wasm's MD5 of a file's parts,
      // web/part-match.ts) and nothing more: eval and string-built JavaScript stay refused.
      `script-src ${page.scriptHash} 'wasm-unsafe-eval'`,
      // Uppy's Dashboard (Preact) sets styles at run time; a hash would turn 'unsafe-inline' off.
      "style-src 'unsafe-inline'",
      "img-src 'self' data: blob:",
      `connect-src 'self' ${s3Origins()}`,
      "form-action 'self'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    vary: 'accept-encoding',
  };
  // async: the Lambda runtime waits for a callback from a handler that returns anything but a promise.
  return async (
    event: Pick<APIGatewayProxyEventV2, 'headers'>,
  ): Promise<APIGatewayProxyStructuredResultV2> => {
    const accepts = /\bgzip\b/i.test(event.headers?.['accept-encoding'] ?? '');
    if (!accepts) return { statusCode: 200, headers, body: page.html };
    gzipped ??= gzipSync(page.html, { level: 9 }).toString('base64');
    return {
      statusCode: 200,
      headers: { ...headers, 'content-encoding': 'gzip' },
      body: gzipped,
      isBase64Encoded: true,
    };
  };
}
