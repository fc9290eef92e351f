import { Ajv2020 } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../lib/openapi/document.ts';

/**
 * Checks answers against the service's own OpenAPI document: the end-to-end helper runs every
 * response it receives through here, so a handler that drifts from the contract fails its test.
 */

type Json = any;
const doc = openApiDocument() as Json;
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(doc, 'openapi');

const templates = Object.keys(doc.paths).map((template) => ({
  template,
  // Literal segments must win over `{param}` ones (`/upload/kill` vs `/upload/{jobId}`).
  literal: !template.includes('{'),
  pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

const pointer = (value: string) => value.replace(/~/g, '~0').replace(/\//g, '~1');

/** Throws when `body` is not what the document promises for this method, path and status. */
export function checkResponse(method: string, url: string, status: number, body: unknown) {
  const path = new URL(url, 'http://x').pathname;
  const candidates = templates.filter(
    (t) => t.pattern.test(path) && doc.paths[t.template][method.toLowerCase()],
  );
  const match = candidates.find((t) => t.literal) ?? candidates[0];
  if (!match) return; // not one of ours (the emulator's own 404 for an unknown route)
  const operation = doc.paths[match.template][method.toLowerCase()];
  const key = operation.responses[String(status)] ? String(status) : 'default';
  if (!operation.responses[key].content?.['application/json']) return;
  const ref = `openapi#/paths/${pointer(match.template)}/${method.toLowerCase()}/responses/${key}/content/application~1json/schema`;
  const validate = ajv.getSchema(ref) ?? ajv.compile({ $ref: ref });
  if (!validate(body)) {
    throw new Error(
      `${method} ${path} answered ${status} off the OpenAPI contract (${operation.operationId}, ${key}): ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`,
    );
  }
}
