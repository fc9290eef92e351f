/**
 * Each handler in functions/ against its entry of the route table (lib/http/routes.ts): the handler
 * validates with the schemas the document describes, and asks for a token where the table says so.
 * The route builders are replaced by ones that hand back their spec, so no handler runs.
 */
import { readdirSync } from 'node:fs';
import { jest } from '@jest/globals';
import type { Route } from '../../lib/http/routes.ts';

const routeSpec = (builder: 'httpRoute' | 'publicRoute') => (spec: Record<string, unknown>) => ({
  builder,
  spec,
});
jest.unstable_mockModule('../../lib/http/route.ts', () => ({ httpRoute: routeSpec('httpRoute') }));
jest.unstable_mockModule('../../lib/http/public-route.ts', () => ({ publicRoute: routeSpec('publicRoute') }));
// Built from web/ by the bundler (scripts/console/), so there is no module to load here.
jest.unstable_mockModule('virtual:console-page', () => ({ default: { html: '', scriptHash: '' } }), {
  virtual: true,
});

const { ROUTES } = await import('../../lib/http/routes.ts');

/** The functions that serve no route of the table (serverless.yml declares them itself). */
const NOT_ROUTES = [
  'functions/unmatched-route.ts',
  'functions/export-worker.ts',
  'functions/export-worker-failed.ts',
  'functions/janitor.ts',
];

describe('the route table and the handlers', () => {
  it('has a handler file for each route, and a route for each handler file but the other functions', () => {
    const files = readdirSync(new URL('../../functions/', import.meta.url))
      .filter((file) => file.endsWith('.ts'))
      .map((file) => `functions/${file}`)
      .sort();
    const handlers = Object.values(ROUTES).map((route) => route.handler);
    expect(new Set(handlers).size).toBe(handlers.length);
    expect([...handlers, ...NOT_ROUTES].sort()).toEqual(files);
  });

  it.each(Object.entries(ROUTES))('%s: the handler takes the input the table names', async (id, route) => {
    const { handler } = (await import(`../../${route.handler}`)) as {
      handler: { builder?: string; spec?: Record<string, unknown> };
    };
    const entry: Route = route;
    // The console's handler is its own (a page, no input): neither builder made it.
    const spec = handler.spec ?? {};
    const needsToken = handler.builder === 'httpRoute' && spec.auth !== 'none';
    expect({
      id,
      needsToken,
      path: spec.path === entry.path,
      query: spec.query === entry.query,
      body: spec.body === entry.body,
      bodyOptional: Boolean(spec.bodyOptional) === Boolean(entry.bodyOptional),
      form: Boolean(spec.form) === Boolean(entry.form),
    }).toEqual({
      id,
      needsToken: entry.auth !== 'none',
      path: true,
      query: true,
      body: true,
      bodyOptional: true,
      form: true,
    });
  });
});
