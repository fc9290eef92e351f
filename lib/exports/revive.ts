import { invokeAsync } from '../aws/clients.ts';
import { config } from '../config.ts';
import { jobStore, workerLeases } from '../jobs/index.ts';
import type { JobRecord } from '../jobs/jobs-table.ts';
import { recordJobMetric } from '../metrics.ts';
import { cleanUpOutput, exportSlot, finishCancel, type WorkerEvent } from './exports.ts';

/** Starts an export worker: in Lambda an asynchronous invoke; tests may run it in-process instead. */
export type StartExportWorker = (event: WorkerEvent) => Promise<void>;

export const invokeExportWorker: StartExportWorker = (event) =>
  invokeAsync(config().exports.workerFunction, event);

export type Revival = 'cancel finished' | 'restarted' | 'failed' | 'restart counted elsewhere';

/**
 * An export whose worker is gone (its lease ran out, or Lambda reported its invocation dead), or
 * that never started: a kill it was in the middle of is finished; otherwise a new worker resumes it
 * from its checkpoint, unless `maxRestarts` restarts in a row brought no finished part, and then it
 * FAILS with its output removed. Every write is conditional (on the restart count read, on the dead
 * worker's token), so of two callers at once (janitors, a janitor and a failure report) one acts.
 */
export async function reviveExport(
  job: JobRecord,
  maxRestarts: number,
  startWorker: StartExportWorker,
): Promise<Revival> {
  if (job.status === 'CANCELLING') {
    await finishCancel(job);
    return 'cancel finished';
  }
  // Counted since the worker last finished a part: an export that keeps moving is never given up.
  const inARow = job.restartsSinceProgress ?? 0;
  if (inARow < maxRestarts) {
    if (!(await workerLeases().countRestart(job))) return 'restart counted elsewhere';
    await startWorker({ username: job.username, jobId: job.jobId });
    recordJobMetric('ExportsRestarted');
    return 'restarted';
  }
  await jobStore().transition(job.username, job.jobId, {
    from: [job.status],
    to: 'FAILED',
    set: { error: `the export worker stopped ${inARow} times in a row without finishing a part` },
    slot: exportSlot(job),
    // Only the dead worker's job: one that a restarted worker claimed since it was read is alive.
    ...(job.workerToken ? { token: job.workerToken } : {}),
  });
  await cleanUpOutput(job);
  recordJobMetric('ExportsFailed');
  return 'failed';
}
