import { HttpError } from './errors.ts';
import { ROUTE_KEYS } from './route-keys.ts';

/**
 * What the API answers for a request that no route took (API Gateway's `$default` route): 404 for a
 * path it does not serve, 405 with `Allow` for a path it serves with other methods. The routes come
 * from the route table (routes.ts), from which serverless.yml's routes and the OpenAPI document are
 * made too.
 */

interface Template {
  pattern: RegExp;
  methods: string[];
  /** Per segment, 1 for a literal and 0 for a `{parameter}`: the more literal, the more specific. */
  shape: number[];
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
  for (const key of ROUTE_KEYS) {
    const [method, path] = key.split(' ') as [string, string];
    byPath.set(path, [...(byPath.get(path) ?? []), method]);
  }
  templates = [...byPath].map(([path, methods]) => ({
    pattern: patternOf(path),
    methods,
    shape: path.split('/').map((segment) => (segment.startsWith('{') ? 0 : 1)),
  }));
  return templates;
}

/** Compares two shapes of the same length, left to right: a literal segment beats a parameter. */
function compareShapes(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/**
 * The templates that match `path` and are the most specific of those, as OpenAPI picks a path: a
 * literal segment wins over a parameter (`/export/kill` over `/export/{jobId}`,
 * `/s3/multipart/{uploadId}/complete` over `/s3/multipart/{uploadId}/{partNumber}`).
 */
function mostSpecific(path: string): Template[] {
  const matching = routeTemplates().filter((template) => template.pattern.test(path));
  const best = matching.reduce<Template | undefined>(
    (found, template) => (!found || compareShapes(template.shape, found.shape) > 0 ? template : found),
    undefined,
  );
  return best ? matching.filter((template) => compareShapes(template.shape, best.shape) === 0) : [];
}

/**
 * The methods the API takes on this path, sorted. A more specific path wins over a template that also
 * matches it, as OpenAPI says: `/export/kill` takes POST, though `DELETE /export/{jobId}` would match.
 */
export function allowedMethods(path: string): string[] {
  return [...new Set(mostSpecific(path).flatMap((t) => t.methods))].sort();
}

/**
 * Companion's GET /s3/params hands out a presigned POST for a whole object in one request (Uppy's
 * default for files up to 100 MB). It is not served: such a POST cannot be revoked once handed out, so
 * a kill could not keep the file from landing, as it does by aborting a multipart upload. Uppy shows
 * this answer's status; the message is for the developer reading the network log.
 */
const SINGLE_REQUEST_UPLOADS =
  'single-request uploads (Companion GET /s3/params) are not served, since a kill could not stop one: set shouldUseMultipart: true on @uppy/aws-s3 to upload every file through POST /s3/multipart';

/** At most this much of a client's path goes back into a message. */
const shown = (path: string) => (path.length > 200 ? `${path.slice(0, 200)}…` : path);

/**
 * The answer for `method path` when no route matched: an error to throw, or (an OPTIONS request for a
 * path that exists, should one ever arrive here rather than at API Gateway's own CORS preflight
 * answer) the methods to list in `Allow` with an empty 204.
 */
export function unmatchedRequest(method: string, path: string): HttpError | { allow: string[] } {
  const allow = allowedMethods(path);
  if (path === '/s3/params') return new HttpError(404, 'NotFound', SINGLE_REQUEST_UPLOADS);
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
 * (the job id "kill"), but the path is the concrete `/export/kill`, which takes POST only; likewise
 * `GET /s3/multipart/{id}/complete` reaches the part-signing route, though its path is the one of
 * complete, which takes POST only. Such a request gets the 405 the document promises rather than
 * whatever the less specific template's route would say.
 */
export function concretePathConflict(method: string, path: string): HttpError | undefined {
  const best = mostSpecific(path);
  if (best.length === 0 || best.some((template) => template.methods.includes(method))) return undefined;
  const answer = unmatchedRequest(method, path);
  return answer instanceof HttpError ? answer : undefined;
}
