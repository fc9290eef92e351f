import {
  type RouteRequest,
  type RouteResult,
  type RouteSpec,
  routeStack,
  type Schema,
} from './route-stack.ts';

/**
 * An HTTP handler that answers without a token (health, the OpenAPI document, unmatched routes). It
 * does not import the token code, which keeps its bundle about 9 KB (zipped) smaller than
 * httpRoute's: the OpenAPI function, which also carries zod's JSON Schema generator, stays under
 * the 50 KB a function may weigh.
 */
export function publicRoute<
  B extends Schema = undefined,
  Q extends Schema = undefined,
  P extends Schema = undefined,
>(spec: Omit<RouteSpec<B, Q, P>, 'auth'>, handle: (request: RouteRequest<B, Q, P>) => Promise<RouteResult>) {
  return routeStack({ ...spec, auth: 'none' }, handle, undefined);
}
