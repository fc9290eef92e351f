import { saveSession } from '../config.ts';
import type { Context } from '../context.ts';
import { UsageError } from '../errors.ts';
import { formatDuration } from '../format.ts';
import { ask, askHidden, closeStdin, readStdinLine } from '../prompt.ts';

export async function login(ctx: Context, usernameArg: string | undefined): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  let username = usernameArg;
  let password: string;
  try {
    if (!username)
      username = (interactive ? await ask('username: ') : await readStdinLine('username')).trim();
    password = interactive ? await askHidden('password: ') : await readStdinLine('password');
  } finally {
    if (!interactive) closeStdin();
  }
  if (!username) throw new UsageError('a username is needed');
  if (!password) throw new UsageError('a password is needed');
  const client = ctx.client(false);
  const result = await client.signIn(username, password);
  const expiresAt = new Date(Date.now() + result.expiresIn * 1000).toISOString();
  const file = saveSession(ctx.api.url, { username, token: result.token, expiresAt });
  ctx.out.event({ event: 'login', apiUrl: ctx.api.url, username, expiresAt, configFile: file });
  ctx.out.line(
    `signed in to ${ctx.api.url} (from ${ctx.api.source}) as ${username}; the token is valid for ${formatDuration(result.expiresIn)}, renewed while commands run until ${result.sessionExpiresAt} (saved in ${file})`,
  );
}
