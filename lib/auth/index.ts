import { documentClient, readSecureParameter } from '../aws/clients.ts';
import { config } from '../config.ts';
import { KeyRing, loadKeyset } from './keys.ts';
import { DEFAULT_THROTTLE, SigninThrottle } from './throttle.ts';
import { UserStore } from './user-store.ts';

/** The identity module's collaborators, wired from configuration once per container. */

let ring: Promise<KeyRing> | undefined;
let users: UserStore | undefined;
let throttle: SigninThrottle | undefined;

/** Keys are read once per container (SSM in AWS); a failed read is retried on the next request. */
export function keyRing(): Promise<KeyRing> {
  if (!ring) {
    const { keys } = config();
    ring = loadKeyset({
      inline: keys.inline,
      file: keys.file,
      parameter: keys.parameter ? { name: keys.parameter, read: readSecureParameter } : undefined,
    }).then((keyset) => new KeyRing(keyset));
    ring.catch(() => {
      ring = undefined;
    });
  }
  return ring;
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
