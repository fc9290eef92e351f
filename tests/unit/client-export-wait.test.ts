import { jest } from '@jest/globals';
import { type ExportApi, waitForExport } from '../../client/exports.ts';
import { ApiError, type ExportJob, type Job, NetworkError } from '../../client/index.ts';

/**
 * waitForExport through an outage: an export runs for minutes or hours, and the service being
 * unreachable for a while (a deploy, a network blip) must not end the wait, while a refusal does.
 */

const job = (status: ExportJob['status']): ExportJob => ({
  jobId: 'exp1',
  type: 'export',
  status,
  filename: 'data.bin',
  format: 'raw',
  size: 10,
  partSize: 10,
  partCount: 1,
  progress: { partsDone: 0, partCount: 1, bytesDone: 0, bytesTotal: 10 },
  createdAt: '',
  updatedAt: '',
});

/** An API whose getJob answers, in turn, each of `answers` (an error is thrown), the last one for good. */
function api(answers: (ExportJob | Error)[]): ExportApi & { polls: () => number } {
  let polls = 0;
  return {
    polls: () => polls,
    fetch: async () => new Response(null),
    startExport: async () => job('QUEUED'),
    cancelExport: async () => job('CANCELLING'),
    getJob: async () => {
      const answer = answers[Math.min(polls++, answers.length - 1)]!;
      if (answer instanceof Error) throw answer;
      return answer as Job;
    },
  };
}

const down = () => new NetworkError('http://api.test/jobs/exp1', 'ECONNREFUSED', 'connection refused');
const unavailable = () => new ApiError(503, 'ServiceUnavailable', 'try again later');

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe('waitForExport through an outage', () => {
  it('waits out network errors and 5xx, then goes on to the export’s end', async () => {
    const service = api([job('RUNNING'), down(), down(), unavailable(), job('RUNNING'), job('SUCCEEDED')]);
    const waiting = waitForExport(service, 'exp1', { pollIntervalMs: 10 });
    await jest.advanceTimersByTimeAsync(30_000);
    await expect(waiting).resolves.toMatchObject({ status: 'SUCCEEDED' });
    expect(service.polls()).toBe(6);
  });

  it('gives up once the service has been unreachable for longer than outageToleranceMs', async () => {
    const service = api([job('RUNNING'), down()]);
    const waiting = waitForExport(service, 'exp1', { pollIntervalMs: 10, outageToleranceMs: 60_000 });
    const settled = expect(waiting).rejects.toBeInstanceOf(NetworkError);
    await jest.advanceTimersByTimeAsync(120_000);
    await settled;
    // Asked less and less often (1 s apart, then up to 10 s): about 14 tries in the minute, not one
    // per poll interval.
    expect(service.polls()).toBeLessThanOrEqual(16);
  });

  it('does not wait out a refusal', async () => {
    const service = api([job('RUNNING'), new ApiError(404, 'JobNotFound', 'no job exp1')]);
    const waiting = waitForExport(service, 'exp1', { pollIntervalMs: 10 });
    const settled = expect(waiting).rejects.toMatchObject({ status: 404 });
    await jest.advanceTimersByTimeAsync(1_000);
    await settled;
  });
});
