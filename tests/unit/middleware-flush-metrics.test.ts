import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { jest } from '@jest/globals';
import { flushMetrics, metrics } from '../../lib/metrics.ts';
import { runAlone } from '../support/middleware.ts';

describe('flushMetrics middleware', () => {
  let publish: jest.SpiedFunction<typeof metrics.publishStoredMetrics>;
  beforeEach(() => {
    publish = jest.spyOn(metrics, 'publishStoredMetrics').mockImplementation(() => metrics);
  });
  afterEach(() => {
    jest.restoreAllMocks();
    metrics.clearMetrics();
  });

  it('writes what the request recorded, whether it succeeded or failed', async () => {
    await runAlone(flushMetrics(), {}, async () => {
      metrics.addMetric('UploadsStarted', MetricUnit.Count, 1);
      return { statusCode: 201, body: '' };
    });
    expect(publish).toHaveBeenCalledTimes(1);
    metrics.clearMetrics();
    const { error } = await runAlone(flushMetrics(), {}, async () => {
      metrics.addMetric('UploadsFailed', MetricUnit.Count, 1);
      throw new Error('boom');
    });
    expect(error?.message).toBe('boom');
    expect(publish).toHaveBeenCalledTimes(2);
  });

  it('writes nothing when nothing was recorded (an empty flush warns on every request)', async () => {
    await runAlone(flushMetrics());
    expect(publish).not.toHaveBeenCalled();
  });
});
