/**
 * Every route of the HTTP API, once, by operation id: serverless.yml deploys exactly these (a test
 * holds the two together), the OpenAPI document describes each one (lib/openapi/document.ts), and
 * the $default route answers 404 or 405 from them (unmatched.ts). No schema here, so that the
 * $default route's bundle stays small.
 */
export const ROUTES = {
  signIn: 'POST /auth/signin',
  // The web console (GET /) and its cookie session (lib/session/cookies.ts).
  getConsole: 'GET /',
  createSession: 'POST /auth/session',
  getSession: 'GET /auth/session',
  deleteSession: 'DELETE /auth/session',
  getJwks: 'GET /.well-known/jwks.json',
  getHealth: 'GET /health',
  getOpenApi: 'GET /openapi.json',
  createUpload: 'POST /upload',
  killUploads: 'DELETE /upload/kill',
  signUploadParts: 'POST /upload/{jobId}/parts',
  recordUploadProgress: 'POST /upload/{jobId}/progress',
  completeUpload: 'POST /upload/{jobId}/complete',
  abortUpload: 'DELETE /upload/{jobId}',
  startExport: 'POST /export',
  killExports: 'POST /export/kill',
  cancelExport: 'DELETE /export/{jobId}',
  listJobs: 'GET /jobs',
  getJob: 'GET /jobs/{jobId}',
  listFiles: 'GET /files',
  // Companion's S3 multipart routes, for @uppy/aws-s3 in its companionEndpoint mode (lib/companion/).
  createMultipartUpload: 'POST /s3/multipart',
  signMultipartPart: 'GET /s3/multipart/{uploadId}/{partNumber}',
  listMultipartParts: 'GET /s3/multipart/{uploadId}',
  completeMultipartUpload: 'POST /s3/multipart/{uploadId}/complete',
  abortMultipartUpload: 'DELETE /s3/multipart/{uploadId}',
} as const;

export type OperationId = keyof typeof ROUTES;
type Method = 'get' | 'post' | 'delete';

/** `{method, path, operationId}` of one route (the method in lower case, as OpenAPI writes it). */
export function route(operationId: OperationId): { method: Method; path: string; operationId: OperationId } {
  const [method, path] = ROUTES[operationId].split(' ') as [string, string];
  return { method: method.toLowerCase() as Method, path, operationId };
}
