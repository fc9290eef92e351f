import { credentialsBody } from '../auth/schemas.ts';
import * as companion from '../companion/responses.ts';
import {
  completeMultipartBody,
  createMultipartBody,
  keyQuery,
  partPath,
  signPartQuery,
  uploadPath,
} from '../companion/schemas.ts';
import { startExportBody } from '../exports/schemas.ts';
import { getJobQuery, jobPath, listJobsQuery } from '../jobs/schemas.ts';
import * as responses from '../openapi/responses.ts';
import * as z from '../schema.ts';
import {
  completeUploadBody,
  createUploadBody,
  recordProgressBody,
  signPartsBody,
} from '../uploads/schemas.ts';

/**
 * Every route of the HTTP API, once. From this table come serverless.yml's HTTP functions
 * (route-functions.cjs), the OpenAPI document (lib/openapi/document.ts) and the routes the `$default`
 * route answers 404 or 405 from (route-keys.ts). Handlers validate with the schemas named here,
 * imported from the same modules; tests/unit/route-table.test.ts holds each handler to its entry, and
 * tests/integration/openapi.test.ts holds the deployed functions and the document to the table.
 *
 * Adding a route: an entry here, its handler in functions/, its lib function.
 */

type Schema = z.ZodMiniType;

export interface Route {
  /** API Gateway's route key. */
  route: `${'GET' | 'POST' | 'DELETE'} /${string}`;
  /** The handler's file; its Lambda function is named after it (functions/upload-parts.ts: uploadParts). */
  handler: `functions/${string}.ts`;
  /**
   * The statements of serverless.yml's `custom.iam` that the function's own role gets. None: it runs
   * with the shared role, which may only write logs.
   */
  iam: readonly string[];
  /** Lambda memory in MB, when the provider's default will not do. */
  memorySize?: number;
  /** Every route needs a token unless it says 'none' (as the handler's httpRoute spec does). */
  auth?: 'none';
  path?: Schema;
  query?: Schema;
  body?: Schema;
  /** The body may be left out. */
  bodyOptional?: boolean;
  /** Also accepts the seed's multipart form. */
  form?: boolean;
  /** Takes an Idempotency-Key header (common/idempotency.ts): a repeat gets the first request's job. */
  idempotencyKey?: boolean;
  summary: string;
  /** Success responses; every operation also documents its error statuses with the error shape. */
  ok: Record<number, { description: string; schema?: Schema; contentType?: string; links?: Links }>;
  errors: number[];
}

/**
 * OpenAPI links: which operations take a value of this response, and where (a path parameter by
 * name, a query parameter as `query.<name>`), as a runtime expression such as
 * `$response.body#/job/jobId`. They document the API's flows, and let a stateful fuzzer follow them
 * (schemathesis in CI) instead of guessing ids. tests/unit/openapi-links.test.ts checks each one.
 */
type Links = Record<string, { operationId: string; parameters: Record<string, string>; description: string }>;

/** The operations that take an upload job's id, from a response whose body holds the job. */
const uploadJobLinks = (jobId: string): Links => ({
  SignUploadParts: {
    operationId: 'signUploadParts',
    parameters: { jobId },
    description: 'presigned URLs for more parts',
  },
  RecordUploadProgress: {
    operationId: 'recordUploadProgress',
    parameters: { jobId },
    description: 'record finished parts',
  },
  CompleteUpload: {
    operationId: 'completeUpload',
    parameters: { jobId },
    description: 'complete the upload',
  },
  AbortUpload: { operationId: 'abortUpload', parameters: { jobId }, description: 'abort the upload' },
  GetJob: { operationId: 'getJob', parameters: { jobId }, description: 'the job and its progress' },
});

/** Companion's operations on an upload, from the key and upload id POST /s3/multipart answers. */
const companionUploadLinks: Links = Object.fromEntries(
  (
    [
      ['SignMultipartPart', 'signMultipartPart', 'a URL for one part'],
      ['ListMultipartParts', 'listMultipartParts', 'the parts S3 holds'],
      ['CompleteMultipartUpload', 'completeMultipartUpload', 'complete the upload'],
      ['AbortMultipartUpload', 'abortMultipartUpload', 'abort the upload'],
    ] as const
  ).map(([name, operationId, description]) => [
    name,
    {
      operationId,
      parameters: { uploadId: '$response.body#/uploadId', 'query.key': '$response.body#/key' },
      description,
    },
  ]),
);

/** Every route that checks a token reads the public keys and the caller's token version. */
const TOKEN = ['verificationKeys', 'tokenVersions'];

// In the order of the OpenAPI document's paths.
export const ROUTES = {
  // The web console (GET /) and its cookie session (lib/session/cookies.ts).
  getConsole: {
    route: 'GET /',
    handler: 'functions/console.ts',
    iam: [],
    auth: 'none',
    summary: 'The web console: one HTML page (Uppy and the page inlined) that uses the session routes',
    ok: { 200: { description: 'the page', schema: z.string(), contentType: 'text/html' } },
    errors: [],
  },
  createSession: {
    route: 'POST /auth/session',
    handler: 'functions/session-create.ts',
    iam: ['users', 'signingKeys'],
    memorySize: 1024,
    auth: 'none',
    body: credentialsBody,
    summary:
      'Sign in for the web console: the token goes into an HttpOnly session cookie (SameSite=Strict; Secure in AWS), with a readable CSRF cookie whose value requests that change something send as X-CSRF-Token',
    ok: { 200: { description: 'signed in; the cookies are set', schema: responses.sessionResponse } },
    errors: [400, 401, 403, 415, 429],
  },
  getSession: {
    route: 'GET /auth/session',
    handler: 'functions/session-get.ts',
    iam: TOKEN,
    summary: 'Who the session cookie (or a token) signs in, and how long its token and its sign-in last',
    ok: { 200: { description: 'the user', schema: responses.sessionResponse } },
    errors: [401],
  },
  renewSession: {
    route: 'POST /auth/session/renew',
    handler: 'functions/session-renew.ts',
    iam: [...TOKEN, 'signingKeys'],
    summary:
      'Renew the web console’s session: a new token of the same sign-in in the cookies (never past SESSION_MAX_HOURS after the password was checked; needs X-CSRF-Token with the cookie)',
    ok: { 200: { description: 'renewed; the cookies are set', schema: responses.sessionResponse } },
    errors: [401, 403],
  },
  deleteSession: {
    route: 'DELETE /auth/session',
    handler: 'functions/session-delete.ts',
    iam: [...TOKEN, 'endSignIns'],
    auth: 'none',
    summary:
      'Sign out of the web console: both session cookies cleared, and the sign-in ended (its tokens refused from now on) while its token is valid (needs X-CSRF-Token with the cookie)',
    ok: { 204: { description: 'signed out; the cookies are cleared' } },
    errors: [403],
  },
  signIn: {
    route: 'POST /auth/signin',
    handler: 'functions/auth-signin.ts',
    iam: ['users', 'signingKeys'],
    // scrypt with N=2^17 needs 128 MiB and a full core for a fraction of a second.
    memorySize: 1024,
    auth: 'none',
    body: credentialsBody,
    summary: 'Check a username and password and issue a JWT',
    ok: { 200: { description: 'a bearer token', schema: responses.tokenResponse } },
    errors: [400, 401, 415, 429],
  },
  signOut: {
    route: 'POST /auth/signout',
    handler: 'functions/auth-signout.ts',
    iam: [...TOKEN, 'endSignIns'],
    summary:
      'End this sign-in: its tokens, renewed ones included, are refused from now on (within AUTH_USER_CACHE_SECONDS); the user’s other sign-ins go on',
    ok: { 204: { description: 'signed out' } },
    errors: [401],
  },
  renewToken: {
    route: 'POST /auth/renew',
    handler: 'functions/auth-renew.ts',
    iam: [...TOKEN, 'signingKeys'],
    summary:
      'A new token of the same sign-in, for a valid one (a job may outlive a token): it lives JWT_TTL_SECONDS, never past SESSION_MAX_HOURS after the password was checked; a revoked token gets 401',
    ok: { 200: { description: 'a bearer token', schema: responses.tokenResponse } },
    errors: [401],
  },
  getJwks: {
    route: 'GET /.well-known/jwks.json',
    handler: 'functions/well-known-jwks.ts',
    iam: ['verificationKeys'],
    auth: 'none',
    summary: 'The public keys that verify the service’s tokens',
    ok: { 200: { description: 'a JSON Web Key Set', schema: responses.jwksResponse } },
    errors: [],
  },
  getHealth: {
    route: 'GET /health',
    handler: 'functions/health.ts',
    iam: [],
    auth: 'none',
    summary: 'Liveness',
    ok: { 200: { description: 'the service is up', schema: responses.healthResponse } },
    errors: [],
  },
  getOpenApi: {
    route: 'GET /openapi.json',
    handler: 'functions/openapi.ts',
    iam: [],
    auth: 'none',
    summary: 'This document',
    ok: { 200: { description: 'the OpenAPI 3.1 document', schema: z.looseObject({ openapi: z.string() }) } },
    errors: [],
  },
  createUpload: {
    route: 'POST /upload',
    handler: 'functions/upload-create.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsRead', 'uploadsWrite', 'uploadsAbort'],
    body: createUploadBody,
    form: true,
    idempotencyKey: true,
    summary:
      'Start a multipart upload (JSON) and get presigned part URLs; or store a small file from the seed’s form (multipart/form-data, field `file`, up to 4 MiB)',
    ok: {
      201: {
        description: 'the upload job, and URLs for its first parts (JSON); or the stored file (form)',
        schema: z.union([responses.createUploadResponse, responses.formUploadResponse]),
        links: uploadJobLinks('$response.body#/job/jobId'),
      },
    },
    errors: [400, 401, 409, 413, 415, 422, 429],
  },
  killUploads: {
    route: 'DELETE /upload/kill',
    handler: 'functions/upload-kill.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsAbort'],
    summary: 'Abort every in-flight upload of the caller',
    ok: { 200: { description: 'the aborted uploads', schema: responses.killUploadsResponse } },
    errors: [401, 404],
  },
  signUploadParts: {
    route: 'POST /upload/{jobId}/parts',
    handler: 'functions/upload-parts.ts',
    iam: [...TOKEN, 'jobsRead', 'uploadsWrite'],
    path: jobPath,
    body: signPartsBody,
    summary:
      'Presigned URLs for any parts of an upload (up to 1,000 per call; numbers 1 to its partCount, each once). An upload created with a checksumAlgorithm takes {parts: [{partNumber, checksum}]}, each part’s checksum in base64, and each URL binds it: send the part with the answer’s headers, and S3 refuses a body that does not match',
    ok: { 200: { description: 'one URL per part', schema: responses.signedPartsResponse } },
    errors: [400, 401, 404, 409, 415],
  },
  recordUploadProgress: {
    route: 'POST /upload/{jobId}/progress',
    handler: 'functions/upload-progress.ts',
    iam: [...TOKEN, 'jobsWrite'],
    path: jobPath,
    body: recordProgressBody,
    summary: 'Record finished parts (numbers 1 to the upload’s partCount, each once)',
    ok: { 200: { description: 'the job with its progress', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409, 415],
  },
  completeUpload: {
    route: 'POST /upload/{jobId}/complete',
    handler: 'functions/upload-complete.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsRead', 'uploadsWrite', 'uploadsAbort'],
    path: jobPath,
    body: completeUploadBody,
    bodyOptional: true,
    summary:
      'Complete the upload from S3’s own part list. With a CRC checksumAlgorithm, {checksum} (the whole file’s CRC in base64) has S3 verify the object: 409 ChecksumMismatch when it differs, and the upload stays open. A completion already in flight (a retry whose first answer was lost) is waited for, up to about 24 s, before 409 CompletionInProgress',
    ok: { 200: { description: 'the completed job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  abortUpload: {
    route: 'DELETE /upload/{jobId}',
    handler: 'functions/upload-abort.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsAbort'],
    path: jobPath,
    summary: 'Abort one upload (idempotent)',
    ok: { 200: { description: 'the aborted job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  startExport: {
    route: 'POST /export',
    handler: 'functions/export-create.ts',
    // exportsRead: a repeat (same Idempotency-Key) of an export that has finished gets the job as
    // GET /jobs/{id} does, with a download URL, which this role signs.
    iam: [...TOKEN, 'jobsWrite', 'uploadsRead', 'invokeWorker', 'exportsRead'],
    body: startExportBody,
    idempotencyKey: true,
    summary: 'Start an export of a file in the caller’s uploads folder',
    ok: {
      202: {
        description: 'the queued export job',
        schema: responses.jobResponse,
        links: {
          GetJob: {
            operationId: 'getJob',
            parameters: { jobId: '$response.body#/job/jobId' },
            description: 'the export’s progress, and its download URL once it succeeded',
          },
          CancelExport: {
            operationId: 'cancelExport',
            parameters: { jobId: '$response.body#/job/jobId' },
            description: 'cancel the export',
          },
        },
      },
    },
    errors: [400, 401, 404, 415, 422, 429],
  },
  killExports: {
    route: 'POST /export/kill',
    handler: 'functions/export-kill.ts',
    iam: [...TOKEN, 'jobsWrite', 'exportsCleanUp', 'bucketList'],
    summary: 'Cancel every running export of the caller',
    ok: { 200: { description: 'the cancelled exports', schema: responses.killExportsResponse } },
    errors: [401, 404],
  },
  cancelExport: {
    route: 'DELETE /export/{jobId}',
    handler: 'functions/export-cancel.ts',
    iam: [...TOKEN, 'jobsWrite', 'exportsCleanUp', 'bucketList'],
    path: jobPath,
    summary: 'Cancel one export',
    ok: { 200: { description: 'the cancelled job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  listJobs: {
    route: 'GET /jobs',
    handler: 'functions/jobs-list.ts',
    iam: [...TOKEN, 'jobsRead', 'jobsFilteredList'],
    query: listJobsQuery,
    summary: 'The caller’s jobs, newest first',
    ok: { 200: { description: 'a page of jobs', schema: responses.jobsPageResponse } },
    errors: [400, 401],
  },
  getJob: {
    route: 'GET /jobs/{jobId}',
    handler: 'functions/job-get.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsAbort', 'exportsRead'],
    path: jobPath,
    query: getJobQuery,
    summary: 'One job with its progress; `reconcile=true` checks an upload against S3',
    ok: { 200: { description: 'the job', schema: responses.reconcileResponse } },
    errors: [400, 401, 404],
  },
  listFiles: {
    route: 'GET /files',
    handler: 'functions/files-list.ts',
    iam: [...TOKEN, 'uploadsList', 'jobsRead'],
    summary: 'The caller’s uploads folder',
    ok: { 200: { description: 'the files', schema: responses.filesResponse } },
    errors: [401],
  },
  // Companion's S3 multipart routes (Uppy's @uppy/aws-s3 in companionEndpoint mode; lib/companion/):
  // the same upload jobs; `uploadId` is the job id, `key` is uploads/<username>/<filename>.
  createMultipartUpload: {
    route: 'POST /s3/multipart',
    handler: 'functions/s3-multipart-create.ts',
    iam: [...TOKEN, 'jobsRead', 'jobsWrite', 'uploadsRead', 'uploadsWrite', 'uploadsAbort'],
    body: createMultipartBody,
    summary: 'Companion: open an upload job whose part sizes S3 tells at completion',
    ok: {
      200: {
        description: 'the key and upload id',
        schema: companion.createMultipartResponse,
        links: companionUploadLinks,
      },
    },
    idempotencyKey: true,
    errors: [400, 401, 409, 415, 422, 429],
  },
  signMultipartPart: {
    route: 'GET /s3/multipart/{uploadId}/{partNumber}',
    handler: 'functions/s3-multipart-sign-part.ts',
    iam: [...TOKEN, 'jobsRead', 'uploadsWrite'],
    path: partPath,
    query: signPartQuery,
    summary:
      'Companion: a presigned URL for one part (binding its checksum, for an upload with a checksum algorithm)',
    ok: { 200: { description: 'the part URL', schema: companion.signPartResponse } },
    errors: [400, 401, 404, 409],
  },
  listMultipartParts: {
    route: 'GET /s3/multipart/{uploadId}',
    handler: 'functions/s3-multipart-list-parts.ts',
    iam: [...TOKEN, 'jobsRead', 'jobsWrite', 'uploadsAbort'],
    path: uploadPath,
    query: keyQuery,
    summary: 'Companion: the parts S3 holds (a bare array)',
    ok: { 200: { description: 'the parts', schema: companion.listPartsResponse } },
    errors: [400, 401, 404],
  },
  completeMultipartUpload: {
    route: 'POST /s3/multipart/{uploadId}/complete',
    handler: 'functions/s3-multipart-complete.ts',
    iam: [...TOKEN, 'jobsRead', 'jobsWrite', 'uploadsRead', 'uploadsWrite', 'uploadsAbort'],
    path: uploadPath,
    query: keyQuery,
    body: completeMultipartBody,
    summary:
      'Companion: complete the upload from S3’s part list. A completion already in flight (Uppy’s retry of one whose answer was lost) is waited for, up to about 24 s, before 409 CompletionInProgress',
    ok: {
      200: { description: 'where the job is, and the job', schema: companion.completeMultipartResponse },
    },
    errors: [400, 401, 404, 409, 413, 415, 429],
  },
  abortMultipartUpload: {
    route: 'DELETE /s3/multipart/{uploadId}',
    handler: 'functions/s3-multipart-abort.ts',
    iam: [...TOKEN, 'jobsWrite', 'uploadsAbort'],
    path: uploadPath,
    query: keyQuery,
    summary: 'Companion: abort the upload',
    ok: { 200: { description: 'the aborted job', schema: companion.abortMultipartResponse } },
    errors: [400, 401, 404, 409],
  },
} satisfies Record<string, Route>;

export type OperationId = keyof typeof ROUTES;

/** The Lambda function of a route: its handler's file name in camelCase. */
export const functionName = (route: Pick<Route, 'handler'>): string =>
  route.handler
    .slice('functions/'.length, -'.ts'.length)
    .replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
