import { config } from '../config.ts';
import { jobStore, workerLeases } from '../jobs/index.ts';
import { logger } from '../log.ts';
import type * as z from '../schema.ts';
import type { WorkerEvent } from './exports.ts';
import { persistently } from './persistently.ts';
import { invokeExportWorker, type Revival, reviveExport, type StartExportWorker } from './revive.ts';
import type { failedWorkerRecordSchema } from './schemas.ts';

export type FailedWorkerRecord = z.output<typeof failedWorkerRecordSchema>;

/**
 * A worker invocation that Lambda reports failed (the worker function's on-failure destination):
 * it crashed, ran out of memory or time, or threw, so it renews no lease and writes nothing more.
 * If that very invocation still holds the job (the job records the id of the invocation that
 * claimed it), its lease ends now and the export is revived as the janitor would (reviveExport):
 * resumed from its checkpoint within seconds instead of after the lease and the janitor's next run.
 * A QUEUED job whose first invocation died before claiming it is revived too. Otherwise someone else
 * runs the job, or it ended, and the report changes nothing.
 */
export async function recoverFailedWorker(
  record: FailedWorkerRecord,
  startWorker: StartExportWorker = invokeExportWorker,
): Promise<Revival | 'not held by it'> {
  const { requestId } = record.requestContext;
  const { username, jobId } = record.requestPayload;
  const job = await jobStore().get(username, jobId);
  // A QUEUED job's first invocation died before it claimed it (its start-up or its first write
  // failed): there is no lease to revoke, and a duplicate start would find the job taken.
  const neverClaimed = job?.status === 'QUEUED' && !record.requestPayload.token;
  const held =
    job?.workerRequestId === requestId && (job.status === 'RUNNING' || job.status === 'CANCELLING');
  const revivable = neverClaimed ? job : held ? await workerLeases().revokeDead(job, requestId) : undefined;
  if (!revivable) return 'not held by it';
  const revival = await reviveExport(revivable, config().janitor.maxExportRestarts, startWorker);
  logger.warn('export worker invocation failed; the export was revived', { requestId, revival });
  return revival;
}

/**
 * serverless-offline has no on-failure destinations, and an asynchronous invocation that fails there
 * is an unhandled rejection that ends its whole process (every handler of `npm start` or a test
 * stack); the chaos soak met it when a worker's claim lost DynamoDB. Under serverless-offline the
 * worker runs on its own failure the recovery that Lambda's on-failure destination would run, and
 * retries it until `until`. If that fails too, the janitor is left.
 */
export async function recoverOwnFailureOffline(
  requestId: string,
  event: WorkerEvent,
  error: unknown,
  until: number,
): Promise<Revival | 'not held by it' | 'not recovered'> {
  logger.error('export worker invocation failed', { error: error as Error });
  try {
    // As Lambda would retry the destination's invocation, the recovery waits out an outage.
    return await persistently(
      'recovering the failed invocation',
      () => recoverFailedWorker({ requestContext: { requestId }, requestPayload: event }),
      until,
    );
  } catch (recoveryError) {
    logger.error('could not recover the failed invocation; the janitor will', {
      error: recoveryError as Error,
    });
    return 'not recovered';
  }
}
