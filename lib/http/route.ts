import { authenticate } from '../auth/authenticate.ts';
import {
  type RouteRequest,
  type RouteResult,
  type RouteSpec,
  routeStack,
  type Schema,
} from './route-stack.ts';

export * from './route-stack.ts';

/**
 * An HTTP handler: the route stack (route-stack.ts) with token authentication on every route that does
 * not say `auth: 'none'`.
 */
export function httpRoute<
  B extends Schema = undefined,
  Q extends Schema = undefined,
  P extends Schema = undefined,
>(spec: RouteSpec<B, Q, P>, handle: (request: RouteRequest<B, Q, P>) => Promise<RouteResult>) {
  return routeStack(spec, handle, authenticate);
}
