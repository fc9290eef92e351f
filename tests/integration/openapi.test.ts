import { Validator } from '@seriousme/openapi-schema-validator';
import { openApiDocument } from '../../lib/openapi/document.ts';
import { resolveService } from '../../scripts/local-stack.ts';
import { api } from '../support/http.ts';
import { checkResponse } from '../support/openapi.ts';

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(openApiDocument() as never);
    expect(result).toEqual({ valid: true });
    expect(openApiDocument().openapi).toBe('3.1.0');
  });

  it('describes exactly the HTTP routes that serverless.yml deploys', async () => {
    const service = (await resolveService('test')) as unknown as {
      functions: Record<string, { events?: { httpApi?: '*' | { method: string; path: string } }[] }>;
    };
    const events = Object.values(service.functions).flatMap((fn) => fn.events ?? []);
    const deployed = events
      .flatMap(({ httpApi }) =>
        httpApi && httpApi !== '*' ? [`${httpApi.method.toLowerCase()} ${httpApi.path}`] : [],
      )
      .sort();
    // And one $default route, which answers 404/405 from this same document (lib/http/unmatched.ts).
    expect(
      Object.entries(service.functions).filter(([, fn]) => fn.events?.some((e) => e.httpApi === '*')),
    ).toEqual([
      ['unmatchedRoute', expect.objectContaining({ handler: 'functions/unmatched-route.handler' })],
    ]);
    const paths = openApiDocument().paths as Record<string, Record<string, unknown>>;
    const documented = Object.entries(paths)
      .flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method} ${path}`))
      .sort();
    expect(documented).toEqual(deployed);
  });

  it('documents both auth headers and the error shape on every protected operation', () => {
    const doc = openApiDocument() as any;
    expect(doc.components.securitySchemes).toMatchObject({
      bearer: { type: 'http', scheme: 'bearer' },
      authToken: { type: 'apiKey', in: 'header', name: 'auth_token' },
    });
    for (const [path, methods] of Object.entries<any>(doc.paths)) {
      for (const [method, operation] of Object.entries<any>(methods)) {
        expect({ path, method, hasDefault: !!operation.responses.default }).toEqual({
          path,
          method,
          hasDefault: true,
        });
        if (operation.security === undefined) expect(operation.responses['401']).toBeDefined();
      }
    }
  });

  it('is served at GET /openapi.json', async () => {
    const response = await api('/openapi.json');
    expect(response.status).toBe(200);
    expect(response.body).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
  });

  it('catches a response that breaks the contract', () => {
    expect(() => checkResponse('GET', '/jobs', 200, { jobs: [{ jobId: 1 }] })).toThrow(
      /off the OpenAPI contract/,
    );
    expect(() => checkResponse('DELETE', '/upload/kill', 404, { message: 'no' })).toThrow(
      /off the OpenAPI contract/,
    );
    expect(() =>
      checkResponse('DELETE', '/upload/kill', 404, {
        error: { code: 'NoUploadFound', message: 'm', requestId: 'r' },
      }),
    ).not.toThrow();
  });
});
