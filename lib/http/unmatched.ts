import { HttpError } from './errors.ts';
import { ROUTES } from './routes.ts';

/**
 * What the API answers for a request that no route took (API Gateway's `$default` route): 404 for a
 * path it does not serve, 405 with `Allow` for a path it serves with other methods. The routes come
 * from routes.ts, which tests hold to exactly the routes serverless.yml deploys and the OpenAPI
 * document describes.
 */

interface Template {
  pattern: RegExp;
  methods: string[];
}

let templates: Template[] | undefined;

/** `/upload/{jobId}/parts` -> /^\/upload\/[^/]+\/parts$/: a parameter is one non-empty segment, as in API Gateway. */
const patternOf = (path: string) =>
  new RegExp(
    `^${path
      .split(/(\{[^}]+\})/)
      .map((part, i) => (i % 2 === 1 ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
      .join('')}$`,
  );

function routeTemplates(): Template[] {
  if (templates) return templates;
  const byPath = new Map<string, string[]>();
  for (const key of Object.values(ROUTES)) {
    const [method, path] = key.split(' ') as [string, string];
    byPath.set(path, [...(byPath.get(path) ?? []), method]);
  }
  templates = [...byPath].map(([path, methods]) => ({ pattern: patternOf(path), methods }));
  return templates;
}

/** The methods some route takes on this path (several templates may match: `/upload/kill`), sorted. */
export function allowedMethods(path: string): string[] {
  const methods = new Set<string>();
  for (const template of routeTemplates()) {
    if (template.pattern.test(path)) for (const method of template.methods) methods.add(method);
  }
  return [...methods].sort();
}

/** At most this much of a client's path goes back into a message. */
const shown = (path: string) => (path.length > 200 ? `${path.slice(0, 200)}…` : path);

/**
 * The answer for `method path` when no route matched: an error to throw, or (an OPTIONS request for a
 * path that exists, should one ever arrive here rather than at API Gateway's own CORS preflight
 * answer) the methods to list in `Allow` with an empty 204.
 */
export function unmatchedRequest(method: string, path: string): HttpError | { allow: string[] } {
  const allow = allowedMethods(path);
  if (allow.length === 0) return new HttpError(404, 'NotFound', `there is no route for ${shown(path)}`);
  if (method === 'OPTIONS') return { allow };
  return new HttpError(
    405,
    'MethodNotAllowed',
    `${method} is not allowed on ${shown(path)}; it takes ${allow.join(', ')}`,
    { headers: { allow: allow.join(', ') } },
  );
}
