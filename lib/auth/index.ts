import { decodeProtectedHeader } from 'jose';
import { documentClient, readSecureParameter } from '../aws/clients.ts';
import { config } from '../config.ts';
import { BoundedCache, BoundedCacheMap } from './bounded-cache.ts';
import { KeyRing, loadKeyset, parseVerificationKeys, type TokenSettings } from './keys.ts';
import { DEFAULT_THROTTLE, SigninThrottle } from './throttle.ts';
import { type TokenState, UserStore } from './user-store.ts';
import { VerifiedTokens } from './verified-tokens.ts';

/**
 * The identity module's collaborators, wired from configuration once per container. What an operator
 * changes while containers stay warm (the keys, a user's record) is re-read within the bounds that
 * lib/config.ts sets (README, "Rotation and revocation").
 */

let signing: BoundedCache<KeyRing> | undefined;
let verifying: BoundedCache<KeyRing> | undefined;
let tokenStates: BoundedCacheMap<TokenState | undefined> | undefined;
let users: UserStore | undefined;
let throttle: SigninThrottle | undefined;

const keysMaxAgeMs = () => config().keys.maxAgeSeconds * 1000;

/** The private keyset (SSM SecureString in AWS, the key file locally), for signing. */
function signingKeys(): BoundedCache<KeyRing> {
  const { keys } = config();
  signing ??= new BoundedCache(
    async () =>
      new KeyRing(
        await loadKeyset({
          inline: keys.inline,
          file: keys.file,
          parameter: keys.parameter ? { name: keys.parameter, read: readSecureParameter } : undefined,
        }),
      ),
    keysMaxAgeMs(),
  );
  return signing;
}

/**
 * The public keys. In AWS they come from their own parameter, so that the functions that only verify
 * never see a private key; locally one keyset file serves both.
 */
function verificationKeys(): BoundedCache<KeyRing> {
  const { keys } = config();
  if (keys.inline || keys.file || !keys.publicParameter) return signingKeys();
  const name = keys.publicParameter;
  verifying ??= new BoundedCache(
    async () => new KeyRing(parseVerificationKeys(await readSecureParameter(name), name)),
    keysMaxAgeMs(),
  );
  return verifying;
}

/** Sign-in only (the only function allowed to read the private keys in AWS). */
export function signingKeyRing(): Promise<KeyRing> {
  return signingKeys().get();
}

/** The keys that verify tokens, as published at /.well-known/jwks.json. */
export function verificationKeyRing(): Promise<KeyRing> {
  return verificationKeys().get();
}

/**
 * Tokens verified by this container, kept so a client's next request with the same token skips the
 * signature check (lib/auth/verified-tokens.ts says why that stays as strict). A container serves one
 * request at a time, mostly for few users; a thousand tokens is well under 1 MiB.
 */
const verified = new VerifiedTokens<Awaited<ReturnType<KeyRing['verify']>>>({ maxEntries: 1000 });

const kidOf = (token: string): string | undefined => {
  try {
    return decodeProtectedHeader(token).kid;
  } catch {
    return undefined; // not a JWT: verifying says so, in jose's terms
  }
};

/**
 * Verifies a token. One that names a key this container does not know yet is likely signed with a
 * key rotated in since the keys were read: they are read again at once (rate-limited, since anyone
 * can send any kid), so a rotation never waits for the bound to reach a verifier.
 */
export async function verifyToken(token: string, settings: Omit<TokenSettings, 'ttlSeconds'>) {
  const cache = verificationKeys();
  let ring = await cache.get();
  const kid = kidOf(token);
  if (kid !== undefined && !ring.has(kid)) {
    ring = await cache.refresh(config().keys.unknownKidRefreshSeconds * 1000);
  }
  const keys = ring;
  return verified.verify(token, keys, settings, () => keys.verify(token, settings));
}

export function userStore(): UserStore {
  users ??= new UserStore(documentClient(), config().usersTable);
  return users;
}

function tokenStateEntry(username: string) {
  tokenStates ??= new BoundedCacheMap(
    (name) => userStore().tokenState(name),
    config().userCacheSeconds * 1000,
  );
  return tokenStates.entry(username);
}

/**
 * A user's token state (version, ended sign-ins) as this container last read it (at most
 * AUTH_USER_CACHE_SECONDS ago), or undefined when the user does not exist. `newerThan`: the caller
 * holds a token with this version, issued after what is kept was read, so it is read again rather
 * than refused.
 */
export async function currentTokenState(
  username: string,
  newerThan?: number,
): Promise<TokenState | undefined> {
  const entry = tokenStateEntry(username);
  const state = await entry.get();
  if (newerThan === undefined) return state;
  // Versions only grow, and only a token this service signed gets here: a higher one is real news.
  if (state !== undefined && newerThan > state.version) return entry.refresh(0);
  // A user removed and added again; anyone holding the old user's token may ask, so at most once a second.
  if (state === undefined) return entry.refresh(1000);
  return state;
}

/** Reads the user's token state again now: this container has just changed it (a sign-out). */
export function rereadTokenState(username: string): Promise<TokenState | undefined> {
  return tokenStateEntry(username).refresh(0);
}

export function signinThrottle(): SigninThrottle {
  const { signin, usersTable } = config();
  throttle ??= new SigninThrottle(documentClient(), usersTable, {
    ...DEFAULT_THROTTLE,
    maxFailuresPerUser: signin.maxFailuresPerUser,
    maxFailuresPerIp: signin.maxFailuresPerIp,
    baseLockSeconds: signin.lockSeconds,
  });
  return throttle;
}
