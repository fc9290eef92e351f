import { jest } from '@jest/globals';
import { conflict } from '../../lib/http/errors.ts';
import { errorMapper } from '../../lib/http/middleware/error-mapper.ts';
import { logger } from '../../lib/log.ts';
import { runAlone } from '../support/middleware.ts';

describe('errorMapper middleware', () => {
  beforeEach(() => {
    jest.spyOn(logger, 'info').mockImplementation(() => {});
    jest.spyOn(logger, 'error').mockImplementation(() => {});
  });
  afterEach(() => jest.restoreAllMocks());

  it("answers a deliberate error with its status and code, under the request's id", async () => {
    const { response, error, event } = await runAlone(errorMapper(), {}, async () => {
      throw conflict('JobFinished', 'the job has finished');
    });
    expect(error).toBeUndefined();
    expect(response?.statusCode).toBe(409);
    expect(response?.headers?.['x-request-id']).toBe(event.requestContext.requestId);
    expect(JSON.parse(response!.body!)).toEqual({
      error: {
        code: 'JobFinished',
        message: 'the job has finished',
        requestId: event.requestContext.requestId,
      },
    });
  });

  it('answers anything else with a bare 500 and leaves a success alone', async () => {
    const failed = await runAlone(errorMapper(), {}, async () => {
      throw new Error('password=hunter2');
    });
    expect(failed.response?.statusCode).toBe(500);
    expect(failed.response?.body).not.toContain('hunter2');
    const fine = await runAlone(errorMapper(), {}, async () => ({ statusCode: 201, body: 'made' }));
    expect(fine.response).toEqual({ statusCode: 201, body: 'made' });
  });
});
