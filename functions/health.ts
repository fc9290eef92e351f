import { config } from '../lib/config.ts';
import { publicRoute } from '../lib/http/public-route.ts';

/** GET /health: liveness for load balancers and the local stack's readiness check. */
export const handler = publicRoute({}, async () => ({
  status: 200,
  body: { status: 'ok', stage: config().stage },
}));
