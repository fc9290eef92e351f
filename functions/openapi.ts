import { publicRoute } from '../lib/http/public-route.ts';
import { openApiDocument } from '../lib/openapi/document.ts';

/** GET /openapi.json: the OpenAPI 3.1 document of every route. */
export const handler = publicRoute({}, async () => ({
  status: 200,
  body: openApiDocument(),
  headers: { 'cache-control': 'public, max-age=300' },
}));
