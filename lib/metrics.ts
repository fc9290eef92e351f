import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type middy from '@middy/core';

/**
 * Business metrics as CloudWatch embedded metric format (EMF) lines in the function's log: no API
 * call, no extra latency. One namespace, one `service` dimension.
 */
export const metrics = new Metrics({
  namespace: 'file-jobs',
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'file-jobs',
});

export type JobMetric =
  | 'UploadsStarted'
  | 'UploadsCompleted'
  | 'UploadsAborted'
  | 'UploadsFailed'
  | 'UploadsExpired'
  | 'ExportsStarted'
  | 'ExportsSucceeded'
  | 'ExportsCancelled'
  | 'ExportsFailed'
  /** A worker restarted from its checkpoint: by itself after a passing fault, by a failure report or by the janitor. */
  | 'ExportsRestarted'
  | 'ExportOutputsExpired';

/** Counts one job event; `bytes` also adds to BytesUploaded / BytesExported. */
export function recordJobMetric(name: JobMetric, bytes?: number) {
  metrics.addMetric(name, MetricUnit.Count, 1);
  if (bytes !== undefined && bytes > 0) {
    metrics.addMetric(name.startsWith('Upload') ? 'BytesUploaded' : 'BytesExported', MetricUnit.Bytes, bytes);
  }
}

const flush = () => {
  // Only when something was recorded: an empty flush logs a warning on every request.
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
};

/** Writes the invocation's metrics at its end, whether it succeeded or failed. */
export const flushMetrics = (): middy.MiddlewareObj => ({ after: flush, onError: flush });
