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
  /** No `{parameter}` in it: it matches one path only. */
  concrete: boolean;
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
  templates = [...byPath].map(([path, methods]) => ({
    pattern: patternOf(path),
    methods,
    concrete: !path.includes('{'),
  }));
  return templates;
}

/**
 * The methods the API takes on this path, sorted. A concrete path wins over a template that also
 * matches it, as OpenAPI says: `/export/kill` takes POST, though `DELETE /export/{jobId}` would match.
 */
export function allowedMethods(path: string): string[] {
  const matching = routeTemplates().filter((template) => template.pattern.test(path));
  const concrete = matching.filter((template) => template.concrete);
  return [...new Set((concrete.length > 0 ? concrete : matching).flatMap((t) => t.methods))].sort();
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

/**
 * For a route that took a request: API Gateway routes `DELETE /export/kill` to `DELETE /export/{jobId}`
 * (the job id "kill"), but the path is the concrete `/export/kill`, which takes POST only. Such a
 * request gets the 405 the document promises rather than whatever the template's route would say.
 */
export function concretePathConflict(method: string, path: string): HttpError | undefined {
  const concrete = routeTemplates().find((template) => template.concrete && template.pattern.test(path));
  if (!concrete || concrete.methods.includes(method)) return undefined;
  const answer = unmatchedRequest(method, path);
  return answer instanceof HttpError ? answer : undefined;
}
