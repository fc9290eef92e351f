import { config } from '../lib/config.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /health: liveness for load balancers and the local stack's readiness check. */
export const handler = httpRoute({ auth: 'none' }, async () => ({
  status: 200,
  body: { status: 'ok', stage: config().stage },
}));
