import { openApiDocument } from '../../lib/openapi/document.ts';

/**
 * The OpenAPI document's links (lib/http/routes.ts): each names an operation that exists, fills
 * parameters that operation has, in the place it has them, from a value the response's own schema
 * holds. A wrong link would send a stateful fuzzer (and a reader) to the wrong place silently.
 */

interface Parameter {
  name: string;
  in: string;
}
interface Link {
  operationId: string;
  parameters: Record<string, string>;
}
interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
}
interface OperationObject {
  operationId: string;
  parameters: Parameter[];
  responses: Record<
    string,
    { links?: Record<string, Link>; content?: Record<string, { schema: JsonSchema }> }
  >;
}

const paths = openApiDocument().paths as Record<string, Record<string, OperationObject>>;
const operations = Object.values(paths).flatMap((methods) => Object.values(methods));
const byId = new Map(operations.map((operation) => [operation.operationId, operation]));

/** The schema a JSON pointer reaches through object properties, in any branch of a union. */
function reach(schema: JsonSchema, pointer: string[]): JsonSchema | undefined {
  if (pointer.length === 0) return schema;
  for (const branch of [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])]) {
    const found = reach(branch, pointer);
    if (found) return found;
  }
  const next = schema.properties?.[pointer[0]!];
  return next ? reach(next, pointer.slice(1)) : undefined;
}

const links = operations.flatMap((operation) =>
  Object.entries(operation.responses).flatMap(([status, response]) =>
    Object.entries(response.links ?? {}).map(([name, link]) => ({
      from: `${operation.operationId} ${status} ${name}`,
      link,
      schema: response.content?.['application/json']?.schema,
    })),
  ),
);

it('the flows a client follows are linked: upload, export, Companion', () => {
  const targets = (operationId: string) =>
    links.filter(({ from }) => from.startsWith(`${operationId} `)).map(({ link }) => link.operationId);
  expect(targets('createUpload')).toEqual(
    expect.arrayContaining([
      'signUploadParts',
      'recordUploadProgress',
      'completeUpload',
      'abortUpload',
      'getJob',
    ]),
  );
  expect(targets('startExport')).toEqual(expect.arrayContaining(['getJob', 'cancelExport']));
  expect(targets('createMultipartUpload')).toEqual(
    expect.arrayContaining([
      'signMultipartPart',
      'listMultipartParts',
      'completeMultipartUpload',
      'abortMultipartUpload',
    ]),
  );
});

it.each(links)(
  '$from: names an operation, its parameters, and values its response holds',
  ({ link, schema }) => {
    const target = byId.get(link.operationId);
    expect(target).toBeDefined();
    for (const [qualified, expression] of Object.entries(link.parameters)) {
      const [place, name] = qualified.includes('.') ? qualified.split('.') : ['path', qualified];
      expect(target!.parameters).toContainEqual(expect.objectContaining({ name, in: place }));
      const pointer = /^\$response\.body#\/(.+)$/.exec(expression)?.[1];
      expect(pointer).toBeDefined();
      expect(reach(schema!, pointer!.split('/'))).toMatchObject({ type: 'string' });
    }
  },
);
