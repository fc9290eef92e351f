import { Validator } from '@seriousme/openapi-schema-validator';
import { functionName, ROUTES, type Route } from '../../lib/http/routes.ts';
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

  it('describes each route of the route table under its operation id, public where the table says', () => {
    const paths = openApiDocument().paths as Record<
      string,
      Record<string, { operationId: string; security?: [] }>
    >;
    const documented = Object.entries(paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({
        id: operation.operationId,
        route: `${method.toUpperCase()} ${path}`,
        public: operation.security !== undefined,
      })),
    );
    const table = Object.entries<Route>(ROUTES).map(([id, route]) => ({
      id,
      route: route.route,
      public: route.auth === 'none',
    }));
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    expect(documented.sort(byId)).toEqual(table.sort(byId));
  });

  it('is served by exactly the functions serverless.yml makes of the route table', async () => {
    const service = (await resolveService('test')) as unknown as {
      custom: { iam: Record<string, unknown> };
      functions: Record<
        string,
        {
          handler: string;
          events?: { httpApi?: '*' | { method: string; path: string } }[];
          iamRoleStatements?: unknown[];
          memorySize?: number;
        }
      >;
    };
    const deployed = Object.entries(service.functions)
      .filter(([, fn]) => fn.events?.some(({ httpApi }) => httpApi && httpApi !== '*'))
      .map(([name, fn]) => ({
        name,
        handler: fn.handler,
        events: fn.events,
        iamRoleStatements: fn.iamRoleStatements ?? [],
        memorySize: fn.memorySize,
      }));
    const fromTable = Object.values<Route>(ROUTES).map((route) => {
      const [method, path] = route.route.split(' ');
      return {
        name: functionName(route),
        handler: route.handler.replace(/\.ts$/, '.handler'),
        events: [{ httpApi: { method, path } }],
        // Resolved by name, as serverless resolves `${self:custom.iam.<name>}`.
        iamRoleStatements: route.iam.map((name) => service.custom.iam[name] ?? `no custom.iam.${name}`),
        memorySize: route.memorySize,
      };
    });
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(deployed.sort(byName)).toEqual(fromTable.sort(byName));
    // And one $default route, which answers 404/405 from the same table (lib/http/unmatched.ts).
    expect(
      Object.entries(service.functions).filter(([, fn]) => fn.events?.some((e) => e.httpApi === '*')),
    ).toEqual([
      ['unmatchedRoute', expect.objectContaining({ handler: 'functions/unmatched-route.handler' })],
    ]);
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
