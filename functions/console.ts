import page from 'virtual:console-page';
import { consoleResponder } from '../lib/console/serve.ts';

/**
 * GET / -> the web console: one HTML page (Uppy and the page's code inlined), built from web/ when
 * this function is bundled. Served by a Lambda of the API rather than from the bucket, so that the
 * page and the API share one origin: the session cookie stays SameSite=Strict and same-origin (no
 * CORS with credentials, no second domain to configure), and the bucket stays private.
 */
export const handler = consoleResponder(page);
