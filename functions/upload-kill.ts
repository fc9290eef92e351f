import { httpRoute } from '../lib/http/route.ts';
import { killUploads } from '../lib/uploads/uploads.ts';

/** DELETE /upload/kill -> 200 {aborted: [{jobId, filename}]}, or 404 NoUploadFound. */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: await killUploads(caller.username),
}));
