import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_KEY_PATTERN,
  MAX_IDEMPOTENCY_KEY_LENGTH,
} from '../../common/idempotency.ts';
import { ROUTES, type Route } from '../http/routes.ts';
import * as z from '../schema.ts';
import {
  FILENAME_JSON_SCHEMA,
  filenameSchema,
  PICKED_FILENAME_JSON_SCHEMA,
  pickedFilenameSchema,
} from '../storage/keys.ts';
import * as responses from './responses.ts';

/**
 * The OpenAPI 3.1 document, generated from the route table (lib/http/routes.ts: the very schemas the
 * handlers validate with, and the response schemas in responses.ts); served at GET /openapi.json.
 */

type Schema = z.ZodMiniType;

interface Operation extends Route {
  operationId: string;
  method: string;
  urlPath: string;
}

const operations: Operation[] = Object.entries(ROUTES).map(([operationId, route]) => {
  const [method, path] = route.route.split(' ') as [string, string];
  return { ...route, operationId, method: method.toLowerCase(), urlPath: path };
});

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'malformed JSON (`MalformedJson`), a body that is not a JSON object, a "__proto__" key (`ForbiddenJsonKey`), or invalid input (`ValidationError`: `details.issues` names each bad field)',
  401: 'missing, malformed, expired or otherwise invalid token; or wrong credentials',
  403: 'a session cookie without the matching X-CSRF-Token header on a method that changes something, or a request from a page of another origin (`CsrfCheckFailed`)',
  404: 'no such job or file for this user (another user’s job answers the same)',
  409: 'the job is not in a state that allows this',
  413: 'the form upload is over 4 MiB; or a Companion upload’s file is over the bytes one user may have uploading (limit uploadBytesInFlight)',
  415: 'the body is not JSON',
  422: 'the Idempotency-Key was sent before with another request, or the job it made is gone (`IdempotencyKeyReused`, the job in `details.jobId`)',
  429: 'a limit: sign-in attempts, or a per-user limit on new jobs (uploads or bytes in flight, jobs per minute, running exports) named in the message and in `details.limit`; see Retry-After',
};

const IDEMPOTENCY_KEY_PARAMETER = {
  name: IDEMPOTENCY_KEY_HEADER,
  in: 'header',
  required: false,
  description:
    'A key of the client’s choosing (a UUID, say) that makes the request safe to repeat: for a day, a repeat with the same key and body is answered with the job the first request made (with `Idempotent-Replayed: true`) instead of making another; the same key with another body is refused with 422. JSON bodies only: the seed’s form refuses a key (400). Companion’s create (POST /s3/multipart) also takes the key as `metadata.idempotencyKey`, and its key names the upload in flight: once that upload has ended, a repeat opens a new one',
  schema: { type: 'string', maxLength: MAX_IDEMPOTENCY_KEY_LENGTH, pattern: IDEMPOTENCY_KEY_PATTERN.source },
};

const NO_PROTO_KEY = { not: { const: '__proto__' } };

function jsonSchema(schema: Schema, io: 'input' | 'output') {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      // The file-name rules, from where the server checks them (a refinement JSON Schema cannot see).
      if (zodSchema === filenameSchema) Object.assign(jsonSchema, FILENAME_JSON_SCHEMA);
      if (zodSchema === pickedFilenameSchema) Object.assign(jsonSchema, PICKED_FILENAME_JSON_SCHEMA);
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
          required: !operation.bodyOptional,
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
      ...(ok.links ? { links: ok.links } : {}),
    };
  }
  // With the console's session cookie, a method that changes something can fail its CSRF checks.
  const csrf = operation.auth !== 'none' && operation.method !== 'get' && !operation.errors.includes(403);
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
    ...(operation.auth === 'none' ? { security: [] } : {}),
    parameters: [
      ...parameters(operation.path, 'path'),
      ...parameters(operation.query, 'query'),
      ...(operation.idempotencyKey ? [IDEMPOTENCY_KEY_PARAMETER] : []),
    ],
    ...body,
    responses,
  };
}

let document: Record<string, unknown> | undefined;

export function openApiDocument(): Record<string, unknown> {
  if (document) return document;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of operations) {
    paths[operation.urlPath] ??= {};
    paths[operation.urlPath]![operation.method] = operationObject(operation);
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
