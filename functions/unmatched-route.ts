import { publicRoute } from '../lib/http/public-route.ts';
import { unmatchedRequest } from '../lib/http/unmatched.ts';

/**
 * The HTTP API's `$default` route: every request no other route takes. 404 NotFound for an unknown
 * path, 405 MethodNotAllowed with `Allow` for a known path and another method, both in the service's
 * error shape (without it, API Gateway answers `{"message":"Not Found"}` and serverless-offline its
 * own page). No token needed: which routes exist is no secret (GET /openapi.json lists them).
 */
export const handler = publicRoute({}, async ({ event }) => {
  const method = (event.requestContext?.http?.method ?? 'GET').toUpperCase();
  const answer = unmatchedRequest(method, event.rawPath ?? '/');
  if (answer instanceof Error) throw answer;
  return { status: 204, headers: { allow: answer.allow.join(', ') } };
});
