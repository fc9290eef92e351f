import { verificationKeyRing } from '../lib/auth/index.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /.well-known/jwks.json: the public keys that verify this service's tokens. */
export const handler = httpRoute({ auth: 'none' }, async () => ({
  status: 200,
  body: (await verificationKeyRing()).jwks,
  headers: { 'cache-control': 'public, max-age=300' },
}));
