import { documentClient, readSecureParameter } from '../aws/clients.ts';
import { config } from '../config.ts';
import { KeyRing, loadKeyset, parseVerificationKeys } from './keys.ts';
import { DEFAULT_THROTTLE, SigninThrottle } from './throttle.ts';
import { UserStore } from './user-store.ts';

/** The identity module's collaborators, wired from configuration once per container. */

let signing: Promise<KeyRing> | undefined;
let verifying: Promise<KeyRing> | undefined;
let users: UserStore | undefined;
let throttle: SigninThrottle | undefined;

/** Caches a key read per container (SSM in AWS); a failed read is retried on the next request. */
function cached(read: () => Promise<KeyRing>, keep: (ring: Promise<KeyRing> | undefined) => void) {
  const ring = read();
  keep(ring);
  ring.catch(() => keep(undefined));
  return ring;
}

/** The private keyset, for signing: sign-in only (the only function allowed to read it in AWS). */
export function signingKeyRing(): Promise<KeyRing> {
  const { keys } = config();
  signing ??= cached(
    async () =>
      new KeyRing(
        await loadKeyset({
          inline: keys.inline,
          file: keys.file,
          parameter: keys.parameter ? { name: keys.parameter, read: readSecureParameter } : undefined,
        }),
      ),
    (ring) => {
      signing = ring;
    },
  );
  return signing;
}

/**
 * The public keys, for verifying tokens and publishing the JWKS. In AWS they come from their own
 * parameter, so that the functions that only verify never see a private key; locally from the keyset.
 */
export function verificationKeyRing(): Promise<KeyRing> {
  const { keys } = config();
  if (keys.inline || keys.file || !keys.publicParameter) return signingKeyRingForVerification();
  const name = keys.publicParameter;
  verifying ??= cached(
    async () => new KeyRing(parseVerificationKeys(await readSecureParameter(name), name)),
    (ring) => {
      verifying = ring;
    },
  );
  return verifying;
}

/** Local development and tests: one keyset file serves both. */
function signingKeyRingForVerification(): Promise<KeyRing> {
  verifying ??= signingKeyRing().then((ring) => new KeyRing({ keys: ring.jwks.keys }));
  return verifying;
}

export function userStore(): UserStore {
  users ??= new UserStore(documentClient(), config().usersTable);
  return users;
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
