import { httpRoute } from '../lib/http/route.ts';
import { jobPath } from '../lib/jobs/schemas.ts';
import { signPartsBody } from '../lib/uploads/schemas.ts';
import { signUploadParts } from '../lib/uploads/uploads.ts';

/** POST /upload/{jobId}/parts {partNumbers} | {parts: [{partNumber, checksum}]} -> 200 {parts: [{partNumber, url, expiresAt, headers}]} */
export const handler = httpRoute({ path: jobPath, body: signPartsBody }, async ({ caller, path, body }) => ({
  status: 200,
  body: await signUploadParts(caller.username, path.jobId, body),
}));
