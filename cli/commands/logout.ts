import { ApiError, FileJobsError } from '../../client/index.ts';
import { readConfig, removeSession } from '../config.ts';
import type { Context } from '../context.ts';

/**
 * Ends the stored sign-in on the service (POST /auth/signout: its token, renewed or not, is refused
 * from then on), then forgets it here. A token the service no longer takes (expired, revoked) has
 * nothing left to end; a service that cannot be reached is said, and the token still forgotten.
 */
export async function logout(ctx: Context): Promise<void> {
  const stored = readConfig().sessions[ctx.api.url];
  let ended = false;
  if (stored) {
    try {
      // The stored token, whatever FILE_JOBS_TOKEN says: that is the sign-in this forgets.
      const client = ctx.client(false);
      client.token = stored.token;
      await client.signOut();
      ended = true;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        const why = error instanceof FileJobsError ? error.message : String(error);
        ctx.out.note(
          `note: the sign-in could not be ended on the service (${why}); its token stays valid until ${stored.expiresAt}`,
        );
      }
    }
  }
  const removed = removeSession(ctx.api.url);
  ctx.out.event({ event: 'logout', apiUrl: ctx.api.url, removed, ended });
  ctx.out.line(
    removed
      ? `signed out of ${ctx.api.url}${ended ? ' (the sign-in is ended on the service)' : ''}`
      : `not signed in to ${ctx.api.url}`,
  );
}
