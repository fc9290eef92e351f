import { listFiles } from '../lib/files/list-files.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /files -> 200 {files: [{name, size, lastModified}]} */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: { files: await listFiles(caller.username) },
}));
