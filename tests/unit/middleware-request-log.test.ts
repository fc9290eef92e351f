import { jest } from '@jest/globals';
import { requestLog } from '../../lib/http/middleware/request-log.ts';
import { logger } from '../../lib/log.ts';
import { runAlone } from '../support/middleware.ts';

describe('requestLog middleware', () => {
  let info: jest.SpiedFunction<typeof logger.info>;
  let appendKeys: jest.SpiedFunction<typeof logger.appendKeys>;
  beforeEach(() => {
    info = jest.spyOn(logger, 'info').mockImplementation(() => {});
    appendKeys = jest.spyOn(logger, 'appendKeys');
  });
  afterEach(() => {
    jest.restoreAllMocks();
    logger.resetKeys();
  });

  it("tags the request's log lines with its id, route and job, and logs one line with the status", async () => {
    const { event, response } = await runAlone(
      requestLog(),
      { method: 'GET', routeKey: 'GET /jobs/{jobId}', pathParameters: { jobId: 'J1' } },
      async () => ({ statusCode: 204, body: '' }),
    );
    expect(response?.statusCode).toBe(204);
    expect(appendKeys).toHaveBeenCalledWith({
      requestId: event.requestContext.requestId,
      route: 'GET /jobs/{jobId}',
      jobId: 'J1',
    });
    expect(info).toHaveBeenCalledTimes(1);
    expect(info).toHaveBeenCalledWith('request handled', { status: 204 });
  });

  it('adds no job key without one, and writes no request line when the handler fails', async () => {
    const { error } = await runAlone(requestLog(), { routeKey: 'GET /health' }, async () => {
      throw new Error('boom');
    });
    expect(error?.message).toBe('boom');
    expect(appendKeys.mock.calls[0]![0]).not.toHaveProperty('jobId');
    expect(info).not.toHaveBeenCalled();
  });
});
