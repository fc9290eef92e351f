import { jest } from '@jest/globals';
import { unauthorized } from '../../lib/http/errors.ts';
import { authentication, callerOf } from '../../lib/http/middleware/authentication.ts';
import type { Authenticator } from '../../lib/http/types.ts';
import { logger } from '../../lib/log.ts';
import { runAlone } from '../support/middleware.ts';

describe('authentication middleware', () => {
  afterEach(() => {
    jest.restoreAllMocks();
    logger.resetKeys();
  });

  it('hands the headers, method and cookies to the authenticator and keeps the caller it answers', async () => {
    const appendKeys = jest.spyOn(logger, 'appendKeys');
    const authenticate = jest.fn<Authenticator>(async () => ({ username: 'ana', tokenId: 't1' }));
    const event = { method: 'POST', headers: { authorization: 'Bearer x' } };
    const { seen, error } = await runAlone(authentication(authenticate), event);
    expect(error).toBeUndefined();
    expect(authenticate).toHaveBeenCalledWith(expect.objectContaining({ authorization: 'Bearer x' }), {
      method: 'POST',
      cookies: undefined,
    });
    expect(callerOf(seen!.context)).toEqual({ username: 'ana', tokenId: 't1' });
    expect(appendKeys).toHaveBeenCalledWith({ username: 'ana' });
  });

  it('stops the request before the handler when the authenticator refuses it', async () => {
    const { seen, error, context } = await runAlone(
      authentication(async () => {
        throw unauthorized('sign in first');
      }),
    );
    expect(seen).toBeUndefined();
    expect(error).toMatchObject({ status: 401, message: 'sign in first' });
    expect(callerOf(context)).toBeUndefined();
  });
});
