import { ROUTES } from './routes.ts';

/**
 * `METHOD /path` of every route, for the `$default` route's 404 and 405 (unmatched.ts), which every
 * HTTP handler's stack also consults. Computed from the table here; in a Lambda bundle this module is
 * replaced by its value (scripts/esbuild-plugins.cjs), because the table brings every route's schemas
 * and summaries, which would double the `$default` function's bundle. Without that plugin the answers
 * are the same, only the bundles larger.
 */
export const ROUTE_KEYS: readonly string[] = Object.values(ROUTES).map((route) => route.route);
