import { FileJobsClient, type SignInResult } from '../../client/index.ts';

/**
 * The client renews its token (POST /auth/renew) before a call once a third or less of its life is
 * left, so that an upload or export of hours outlives the token it began with. The service's side
 * (what a renewal gives, and refuses) is tested over HTTP in tests/e2e/auth.test.ts.
 */

const now = () => Math.floor(Date.now() / 1000);

/** An unsigned JWT-shaped token with these claims: the client reads `iat` and `exp`, never checks them. */
const tokenWith = (claims: { iat: number; exp: number; jti?: string }) =>
  `e30.${Buffer.from(JSON.stringify({ sub: 'ann', ...claims })).toString('base64url')}.sig`;

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A service that answers POST /auth/renew with `renewals` in turn and GET /files with nothing. */
function service(renewals: (() => Response)[], serverTime?: Date) {
  const calls: { path: string; token: string | undefined }[] = [];
  const fetch = async (url: string, init: RequestInit) => {
    const path = new URL(url).pathname;
    const token = (init.headers as Record<string, string>).authorization?.replace(/^Bearer /, '');
    calls.push({ path, token });
    if (path === '/auth/renew') {
      const next = renewals.shift();
      if (!next) throw new Error('no more renewals scripted');
      return next();
    }
    const answer = json(200, path === '/health' ? { status: 'ok' } : { files: [] });
    if (serverTime) answer.headers.set('date', serverTime.toUTCString());
    return answer;
  };
  return { fetch, calls };
}

const renewedTo =
  (token: string, expiresIn = 3600): (() => Response) =>
  () =>
    json(200, {
      token,
      tokenType: 'Bearer',
      expiresIn,
      sessionExpiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    });

const clientWith = (
  token: string,
  fetch: ReturnType<typeof service>['fetch'],
  onTokenRenewed?: (r: SignInResult) => void,
) =>
  new FileJobsClient({
    apiUrl: 'http://api.test',
    token,
    fetch,
    retry: { sleep: async () => undefined },
    ...(onTokenRenewed ? { onTokenRenewed } : {}),
  });

describe('token renewal in the client', () => {
  it('leaves a token with more than a third of its life as it is', async () => {
    const token = tokenWith({ iat: now() - 600, exp: now() + 3000 });
    const { fetch, calls } = service([]);
    await clientWith(token, fetch).listFiles();
    expect(calls).toEqual([{ path: '/files', token }]);
  });

  it('renews a token with a third or less left before the call, and sends the call with the new one', async () => {
    const old = tokenWith({ iat: now() - 2500, exp: now() + 1100 });
    const fresh = tokenWith({ iat: now(), exp: now() + 3600 });
    const { fetch, calls } = service([renewedTo(fresh)]);
    const told: SignInResult[] = [];
    const client = clientWith(old, fetch, (renewed) => told.push(renewed));
    await client.listFiles();
    await client.listFiles();
    expect(calls).toEqual([
      { path: '/auth/renew', token: old },
      { path: '/files', token: fresh },
      { path: '/files', token: fresh },
    ]);
    expect(client.token).toBe(fresh);
    expect(told.map((renewed) => renewed.token)).toEqual([fresh]);
  });

  it('gives an app the token to send on its own requests, renewed first when due', async () => {
    const old = tokenWith({ iat: now() - 3000, exp: now() + 600 });
    const fresh = tokenWith({ iat: now(), exp: now() + 3600 });
    const { fetch, calls } = service([renewedTo(fresh)]);
    const client = clientWith(old, fetch);
    expect(await client.accessToken()).toBe(fresh);
    expect(await client.accessToken()).toBe(fresh);
    expect(calls).toEqual([{ path: '/auth/renew', token: old }]);
    expect(await new FileJobsClient({ apiUrl: 'http://api.test' }).accessToken()).toBeUndefined();
  });

  it('renews once for calls made together', async () => {
    const old = tokenWith({ iat: now() - 3000, exp: now() + 600 });
    const fresh = tokenWith({ iat: now(), exp: now() + 3600 });
    const { fetch, calls } = service([renewedTo(fresh)]);
    const client = clientWith(old, fetch);
    await Promise.all([client.listFiles(), client.listFiles(), client.listFiles()]);
    expect(calls.filter((call) => call.path === '/auth/renew')).toHaveLength(1);
    expect(calls.filter((call) => call.path === '/files').map((call) => call.token)).toEqual([
      fresh,
      fresh,
      fresh,
    ]);
  });

  it('goes on with the old token when a renewal fails, and tries again on the next call', async () => {
    const old = tokenWith({ iat: now() - 3000, exp: now() + 600 });
    const fresh = tokenWith({ iat: now(), exp: now() + 3600 });
    const { fetch, calls } = service([
      () => json(503, { error: { code: 'ServiceUnavailable', message: 'down', requestId: 'r' } }),
      renewedTo(fresh),
    ]);
    const client = clientWith(old, fetch);
    await client.listFiles();
    await client.listFiles();
    expect(calls).toEqual([
      { path: '/auth/renew', token: old },
      { path: '/files', token: old },
      { path: '/auth/renew', token: old },
      { path: '/files', token: fresh },
    ]);
  });

  it('stops renewing at the end of the sign-in: a renewal that gives no longer life is the last', async () => {
    const end = now() + 500;
    const old = tokenWith({ iat: now() - 3000, exp: end });
    const last = tokenWith({ iat: now(), exp: end, jti: 'last' });
    const { fetch, calls } = service([renewedTo(last, 500)]);
    const client = clientWith(old, fetch);
    await client.listFiles();
    await client.listFiles();
    expect(calls.map((call) => call.path)).toEqual(['/auth/renew', '/files', '/files']);
  });

  it("counts in the service's clock (its Date header), not this machine's: renews though the local clock is two hours behind", async () => {
    const ahead = 2 * 3600;
    const serverNow = now() + ahead;
    const old = tokenWith({ iat: serverNow - 3000, exp: serverNow + 600 });
    const fresh = tokenWith({ iat: serverNow, exp: serverNow + 3600 });
    const { fetch, calls } = service([renewedTo(fresh)], new Date(serverNow * 1000));
    const client = clientWith(old, fetch);
    // By this machine's clock the token has 2 h 10 min left; the first answer tells the service's time.
    await client.health();
    await client.listFiles();
    expect(calls.map((call) => call.path)).toEqual(['/health', '/auth/renew', '/files']);
  });

  it('sends an expired token as it is (the service answers 401), and never renews with renewToken: false', async () => {
    const expired = tokenWith({ iat: now() - 4000, exp: now() - 400 });
    const { fetch, calls } = service([]);
    await clientWith(expired, fetch).listFiles();
    const old = tokenWith({ iat: now() - 3000, exp: now() + 600 });
    await new FileJobsClient({ apiUrl: 'http://api.test', token: old, fetch, renewToken: false }).listFiles();
    expect(calls).toEqual([
      { path: '/files', token: expired },
      { path: '/files', token: old },
    ]);
  });
});
