import { credentialsBody } from '../auth/schemas.ts';
import * as companion from '../companion/responses.ts';
import {
  completeMultipartBody,
  createMultipartBody,
  keyQuery,
  partPath,
  uploadPath,
} from '../companion/schemas.ts';
import { startExportBody } from '../exports/schemas.ts';
import { route } from '../http/routes.ts';
import { getJobQuery, jobPath, listJobsQuery } from '../jobs/schemas.ts';
import * as z from '../schema.ts';
import { FILENAME_JSON_SCHEMA, filenameSchema } from '../storage/keys.ts';
import { createUploadBody, recordProgressBody, signPartsBody } from '../uploads/schemas.ts';
import * as responses from './responses.ts';

/**
 * The OpenAPI 3.1 document, generated from the very schemas the handlers validate with (and the
 * response schemas in responses.ts); served at GET /openapi.json.
 */

type Schema = z.ZodMiniType;

interface Operation extends ReturnType<typeof route> {
  summary: string;
  auth?: boolean;
  path_?: Schema;
  query?: Schema;
  body?: Schema;
  /** Also accepts the seed's multipart form. */
  form?: boolean;
  /** Success responses; every operation also documents its error statuses with the error shape. */
  ok: Record<number, { description: string; schema?: Schema; contentType?: string }>;
  errors: number[];
}

const sessionResponse = z.object({ username: z.string(), expiresIn: z.number().check(z.int(), z.gte(0)) });

/** One per route of lib/http/routes.ts (the test of the document checks that none is missing). */
const operations: Operation[] = [
  {
    ...route('getConsole'),
    summary: 'The web console: one HTML page (Uppy and the page inlined) that uses the session routes',
    auth: false,
    ok: { 200: { description: 'the page', schema: z.string(), contentType: 'text/html' } },
    errors: [],
  },
  {
    ...route('createSession'),
    summary:
      'Sign in for the web console: the token goes into an HttpOnly session cookie (SameSite=Strict; Secure in AWS), with a readable CSRF cookie whose value requests that change something send as X-CSRF-Token',
    auth: false,
    body: credentialsBody,
    ok: { 200: { description: 'signed in; the cookies are set', schema: sessionResponse } },
    errors: [400, 401, 403, 415, 429],
  },
  {
    ...route('getSession'),
    summary: 'Who the session cookie (or a token) signs in',
    ok: { 200: { description: 'the user', schema: z.object({ username: z.string() }) } },
    errors: [401],
  },
  {
    ...route('deleteSession'),
    summary: 'Sign out of the web console: both session cookies cleared (needs X-CSRF-Token with the cookie)',
    auth: false,
    ok: { 204: { description: 'signed out; the cookies are cleared' } },
    errors: [403],
  },
  {
    ...route('signIn'),
    summary: 'Check a username and password and issue a JWT',
    auth: false,
    body: credentialsBody,
    ok: { 200: { description: 'a bearer token', schema: responses.tokenResponse } },
    errors: [400, 401, 415, 429],
  },
  {
    ...route('getJwks'),
    summary: 'The public keys that verify the service’s tokens',
    auth: false,
    ok: { 200: { description: 'a JSON Web Key Set', schema: responses.jwksResponse } },
    errors: [],
  },
  {
    ...route('getHealth'),
    summary: 'Liveness',
    auth: false,
    ok: { 200: { description: 'the service is up', schema: responses.healthResponse } },
    errors: [],
  },
  {
    ...route('getOpenApi'),
    summary: 'This document',
    auth: false,
    ok: { 200: { description: 'the OpenAPI 3.1 document', schema: z.looseObject({ openapi: z.string() }) } },
    errors: [],
  },
  {
    ...route('createUpload'),
    summary:
      'Start a multipart upload (JSON) and get presigned part URLs; or store a small file from the seed’s form (multipart/form-data, field `file`, up to 4 MiB)',
    body: createUploadBody,
    form: true,
    ok: {
      201: {
        description: 'the upload job, and URLs for its first parts (JSON); or the stored file (form)',
        schema: z.union([responses.createUploadResponse, responses.formUploadResponse]),
      },
    },
    errors: [400, 401, 409, 413, 415, 429],
  },
  {
    ...route('killUploads'),
    summary: 'Abort every in-flight upload of the caller',
    ok: { 200: { description: 'the aborted uploads', schema: responses.killUploadsResponse } },
    errors: [401, 404],
  },
  {
    ...route('signUploadParts'),
    summary:
      'Presigned URLs for any parts of an upload (up to 1,000 per call; numbers 1 to its partCount, each once)',
    path_: jobPath,
    body: signPartsBody,
    ok: { 200: { description: 'one URL per part', schema: responses.signedPartsResponse } },
    errors: [400, 401, 404, 409, 415],
  },
  {
    ...route('recordUploadProgress'),
    summary: 'Record finished parts (numbers 1 to the upload’s partCount, each once)',
    path_: jobPath,
    body: recordProgressBody,
    ok: { 200: { description: 'the job with its progress', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409, 415],
  },
  {
    ...route('completeUpload'),
    summary: 'Complete the upload from S3’s own part list',
    path_: jobPath,
    ok: { 200: { description: 'the completed job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  {
    ...route('abortUpload'),
    summary: 'Abort one upload (idempotent)',
    path_: jobPath,
    ok: { 200: { description: 'the aborted job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  {
    ...route('startExport'),
    summary: 'Start an export of a file in the caller’s uploads folder',
    body: startExportBody,
    ok: { 202: { description: 'the queued export job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 415, 429],
  },
  {
    ...route('killExports'),
    summary: 'Cancel every running export of the caller',
    ok: { 200: { description: 'the cancelled exports', schema: responses.killExportsResponse } },
    errors: [401, 404],
  },
  {
    ...route('cancelExport'),
    summary: 'Cancel one export',
    path_: jobPath,
    ok: { 200: { description: 'the cancelled job', schema: responses.jobResponse } },
    errors: [400, 401, 404, 409],
  },
  {
    ...route('listJobs'),
    summary: 'The caller’s jobs, newest first',
    query: listJobsQuery,
    ok: { 200: { description: 'a page of jobs', schema: responses.jobsPageResponse } },
    errors: [400, 401],
  },
  {
    ...route('getJob'),
    summary: 'One job with its progress; `reconcile=true` checks an upload against S3',
    path_: jobPath,
    query: getJobQuery,
    ok: { 200: { description: 'the job', schema: responses.reconcileResponse } },
    errors: [400, 401, 404],
  },
  {
    ...route('listFiles'),
    summary: 'The caller’s uploads folder',
    ok: { 200: { description: 'the files', schema: responses.filesResponse } },
    errors: [401],
  },
  // Companion's S3 multipart routes (Uppy's @uppy/aws-s3 in companionEndpoint mode): the same upload
  // jobs; `uploadId` is the job id, `key` is uploads/<username>/<filename>.
  {
    ...route('createMultipartUpload'),
    summary: 'Companion: open an upload job whose part sizes S3 tells at completion',
    body: createMultipartBody,
    ok: { 200: { description: 'the key and upload id', schema: companion.createMultipartResponse } },
    errors: [400, 401, 409, 415, 429],
  },
  {
    ...route('signMultipartPart'),
    summary: 'Companion: a presigned URL for one part',
    path_: partPath,
    query: keyQuery,
    ok: { 200: { description: 'the part URL', schema: companion.signPartResponse } },
    errors: [400, 401, 404, 409],
  },
  {
    ...route('listMultipartParts'),
    summary: 'Companion: the parts S3 holds (a bare array)',
    path_: uploadPath,
    query: keyQuery,
    ok: { 200: { description: 'the parts', schema: companion.listPartsResponse } },
    errors: [400, 401, 404],
  },
  {
    ...route('completeMultipartUpload'),
    summary: 'Companion: complete the upload from S3’s part list',
    path_: uploadPath,
    query: keyQuery,
    body: completeMultipartBody,
    ok: {
      200: { description: 'where the job is, and the job', schema: companion.completeMultipartResponse },
    },
    errors: [400, 401, 404, 409, 413, 415, 429],
  },
  {
    ...route('abortMultipartUpload'),
    summary: 'Companion: abort the upload',
    path_: uploadPath,
    query: keyQuery,
    ok: { 200: { description: 'the aborted job', schema: companion.abortMultipartResponse } },
    errors: [400, 401, 404, 409],
  },
];

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'malformed JSON (`MalformedJson`), a body that is not a JSON object, a "__proto__" key (`ForbiddenJsonKey`), or invalid input (`ValidationError`: `details.issues` names each bad field)',
  401: 'missing, malformed, expired or otherwise invalid token; or wrong credentials',
  403: 'a session cookie without the matching X-CSRF-Token header on a method that changes something, or a request from a page of another origin (`CsrfCheckFailed`)',
  404: 'no such job or file for this user (another user’s job answers the same)',
  409: 'the job is not in a state that allows this',
  413: 'the form upload is over 4 MiB; or a Companion upload’s file is over the bytes one user may have uploading (limit uploadBytesInFlight)',
  415: 'the body is not JSON',
  429: 'a limit: sign-in attempts, or a per-user limit on new jobs (uploads or bytes in flight, jobs per minute, running exports) named in the message and in `details.limit`; see Retry-After',
};

const NO_PROTO_KEY = { not: { const: '__proto__' } };

function jsonSchema(schema: Schema, io: 'input' | 'output') {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      // The file-name rules, from where the server checks them (a refinement JSON Schema cannot see).
      if (zodSchema === filenameSchema) Object.assign(jsonSchema, FILENAME_JSON_SCHEMA);
      // The JSON body parser refuses a "__proto__" key at any depth (400): say so, since the
      // objects otherwise allow (and ignore) keys of their own.
      if (io === 'input' && jsonSchema.type === 'object') jsonSchema.propertyNames = NO_PROTO_KEY;
    },
  }) as Record<string, unknown>;
  return rest;
}

function parameters(schema: Schema | undefined, where: 'path' | 'query') {
  if (!schema) return [];
  const object = jsonSchema(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || (object.required ?? []).includes(name),
    schema: property,
  }));
}

const errorContent = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } };

function operationObject(operation: Operation) {
  const body = operation.body
    ? {
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: jsonSchema(operation.body, 'input') },
            ...(operation.form
              ? {
                  'multipart/form-data': {
                    schema: {
                      type: 'object',
                      required: ['file'],
                      properties: {
                        file: { type: 'string', contentMediaType: 'application/octet-stream' },
                        overwrite: { type: 'string', enum: ['true', 'false'] },
                      },
                    },
                  },
                }
              : {}),
          },
        },
      }
    : {};
  const responses: Record<string, unknown> = {};
  for (const [status, ok] of Object.entries(operation.ok)) {
    responses[status] = {
      description: ok.description,
      ...(ok.schema
        ? { content: { [ok.contentType ?? 'application/json']: { schema: jsonSchema(ok.schema, 'output') } } }
        : {}),
    };
  }
  // With the console's session cookie, a method that changes something can fail its CSRF checks.
  const csrf = operation.auth !== false && operation.method !== 'get' && !operation.errors.includes(403);
  for (const status of csrf ? [...operation.errors, 403].sort() : operation.errors) {
    responses[String(status)] = { description: ERROR_DESCRIPTIONS[status] ?? 'error', content: errorContent };
  }
  responses.default = {
    description: 'an unexpected fault (5xx), in the same error shape',
    content: errorContent,
  };
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(operation.auth === false ? { security: [] } : {}),
    parameters: [...parameters(operation.path_, 'path'), ...parameters(operation.query, 'query')],
    ...body,
    responses,
  };
}

let document: Record<string, unknown> | undefined;

export function openApiDocument(): Record<string, unknown> {
  if (document) return document;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of operations) {
    paths[operation.path] ??= {};
    paths[operation.path]![operation.method] = operationObject(operation);
  }
  document = {
    openapi: '3.1.0',
    info: {
      title: 'file-jobs',
      version: '0.1.0',
      description:
        'Long-running file jobs per user: sign in for a JWT, upload files of any size straight to S3 with multipart uploads tracked in DynamoDB, export them, and kill either job at any moment.',
    },
    // Both header forms carry the same token; either one satisfies a protected operation.
    // The console's session cookie too (the CSRF rules: the 403 of each operation).
    security: [{ bearer: [] }, { authToken: [] }, { session: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        authToken: { type: 'apiKey', in: 'header', name: 'auth_token', description: 'the seed app’s header' },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'fj_session',
          description:
            'the web console’s session (POST /auth/session); `__Host-fj_session` in AWS. Methods other than GET also need the header X-CSRF-Token equal to the fj_csrf cookie',
        },
      },
      schemas: { Error: jsonSchema(responses.errorResponse, 'output') },
    },
  };
  return document;
}
