import { removeSession } from '../config.ts';
import type { Context } from '../context.ts';

export function logout(ctx: Context): void {
  const removed = removeSession(ctx.api.url);
  ctx.out.event({ event: 'logout', apiUrl: ctx.api.url, removed });
  ctx.out.line(removed ? `signed out of ${ctx.api.url}` : `not signed in to ${ctx.api.url}`);
}
