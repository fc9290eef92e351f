import { TERMINAL_STATUSES } from '../../common/statuses.ts';
import { config } from '../config.ts';
import { invokeExportWorker, reviveExport, type StartExportWorker } from '../exports/revive.ts';
import { HttpError } from '../http/errors.ts';
import { jobStore } from '../jobs/index.ts';
import { hasExpired, type JobRecord, TransitionRejected } from '../jobs/jobs-table.ts';
import { logger } from '../log.ts';
import { recordJobMetric } from '../metrics.ts';
import { fileStore } from '../storage/index.ts';
import { abortInS3, completeUpload } from '../uploads/uploads.ts';

/**
 * The janitor: what nobody else will clean up, because the client or the worker that should have
 * is gone. It reads only unfinished jobs (the sparse ActiveJobsByOwner index) and the bucket's open
 * multipart uploads, and every change it makes is a conditional write, so two janitors at once (or
 * a janitor racing a user's kill) do each thing once.
 *
 * - uploads idle past `uploadIdleSeconds`: multipart upload aborted, job EXPIRED;
 * - uploads stuck in COMPLETING (a crash mid-completion): completion retried;
 * - exports stuck in CANCELLING with no live worker: cleanup finished, job CANCELLED;
 * - exports whose worker stopped renewing its lease, or that never started: worker restarted from
 *   its checkpoint, up to `maxExportRestarts` times in a row without a finished part (restarts the
 *   worker made itself count too); then FAILED with cleanup;
 * - multipart uploads no unfinished job owns (a crash between creating one and recording it),
 *   older than `orphanGraceSeconds`: aborted;
 * - export outputs whose job has expired (or is gone): deleted, so nothing outlives its job. Only
 *   objects older than the retention can belong to an expired job, so only those are looked up.
 */

export interface JanitorSettings {
  uploadIdleSeconds: number;
  /** How long a job may sit in an in-between state (COMPLETING, QUEUED) before it counts as stuck. */
  stuckSeconds: number;
  orphanGraceSeconds: number;
  maxExportRestarts: number;
  /** How long a finished job stays; its export output goes with it. Default: the configured retention. */
  retentionSeconds?: number;
  /** Where to look for orphan multipart uploads (and, under exports/, for expired outputs). */
  prefixes: string[];
}

export interface JanitorReport {
  activeJobs: number;
  uploadsExpired: number;
  completionsRetried: number;
  exportCancelsFinished: number;
  exportsRestarted: number;
  exportsFailed: number;
  orphanUploadsAborted: number;
  exportOutputsDeleted: number;
  errors: number;
}

export function janitorSettings(): JanitorSettings {
  return {
    ...config().janitor,
    retentionSeconds: config().jobRetentionSeconds,
    prefixes: ['uploads/', 'exports/'],
  };
}

const ageSeconds = (iso: string, now: number) => (now - Date.parse(iso)) / 1000;

/**
 * One sweep at `now`. `activeJobs` is what it sweeps: every active job, as the schedule runs it; the
 * tests narrow it to their own users' jobs (tests/support/janitor.ts), as `settings.prefixes` narrows
 * the folders.
 */
export async function runJanitor(
  settings: JanitorSettings = janitorSettings(),
  now = Date.now(),
  startExportWorker: StartExportWorker = invokeExportWorker,
  activeJobs: () => Promise<JobRecord[]> = () => jobStore().allActive(),
): Promise<JanitorReport> {
  const report: JanitorReport = {
    activeJobs: 0,
    uploadsExpired: 0,
    completionsRetried: 0,
    exportCancelsFinished: 0,
    exportsRestarted: 0,
    exportsFailed: 0,
    orphanUploadsAborted: 0,
    exportOutputsDeleted: 0,
    errors: 0,
  };
  const active = await activeJobs();
  report.activeJobs = active.length;
  const nowSeconds = now / 1000;

  // One job's trouble must not stop the sweep: count it, log it, go on.
  const attempt = async (job: JobRecord, what: string, step: () => Promise<void>) => {
    try {
      await step();
    } catch (error) {
      if (error instanceof TransitionRejected) return; // someone else moved it first
      report.errors++;
      logger.error(`janitor could not ${what}`, {
        jobId: job.jobId,
        username: job.username,
        error: error as Error,
      });
    }
  };

  for (const job of active) {
    if (job.type === 'upload') {
      if (job.status === 'UPLOADING' && ageSeconds(job.updatedAt, now) > settings.uploadIdleSeconds) {
        await attempt(job, 'expire an idle upload', async () => {
          // Clients that send parts without reporting progress (Uppy) are active in S3 only.
          if (await receivedPartSince(job, now - settings.uploadIdleSeconds * 1000)) return;
          // Conditional on the activity read: progress recorded since the scan keeps the upload alive.
          await jobStore().transition(job.username, job.jobId, {
            from: ['UPLOADING'],
            to: 'EXPIRED',
            set: { error: `no activity for ${Math.round(settings.uploadIdleSeconds / 3600)} h` },
            slot: { jobId: job.jobId, type: 'upload', name: job.filename },
            ifUpdatedAt: job.updatedAt,
          });
          await abortInS3(job);
          recordJobMetric('UploadsExpired');
          report.uploadsExpired++;
        });
      } else if (job.status === 'COMPLETING' && ageSeconds(job.updatedAt, now) > settings.stuckSeconds) {
        await attempt(job, 'retry a completion', async () => {
          try {
            await completeUpload(job.username, job.jobId, {
              judgedAt: { now, stuckSeconds: settings.stuckSeconds },
            });
          } catch (error) {
            // A 409 is a settled job: FAILED (nothing in S3 to complete) or UPLOADING again (its
            // parts no longer fit), which is what S3 holds; not a janitor failure.
            if (!(error instanceof HttpError && error.status === 409)) throw error;
          }
          report.completionsRetried++;
        });
      }
      continue;
    }

    const workerGone = (job.leaseUntil ?? 0) < nowSeconds;
    if (
      (job.status === 'CANCELLING' && workerGone) ||
      (job.status === 'RUNNING' && workerGone) ||
      (job.status === 'QUEUED' && ageSeconds(job.updatedAt, now) > settings.stuckSeconds)
    ) {
      await attempt(job, 'revive an export', async () => {
        const revival = await reviveExport(job, settings.maxExportRestarts, startExportWorker);
        if (revival === 'cancel finished') report.exportCancelsFinished++;
        if (revival === 'restarted') report.exportsRestarted++;
        if (revival === 'failed') report.exportsFailed++;
      });
    }
  }

  const owned = new Set(active.flatMap((job) => (job.uploadId ? [job.uploadId] : [])));
  for (const prefix of settings.prefixes) {
    for (const open of await fileStore().listOpenUploads(prefix)) {
      if (owned.has(open.uploadId) || (now - open.initiated.getTime()) / 1000 <= settings.orphanGraceSeconds)
        continue;
      // A job may have recorded it since the scan above: look once more before aborting.
      if (await ownedNow(open.key, open.uploadId)) continue;
      await fileStore().abortMultipartUpload(open.key, open.uploadId);
      report.orphanUploadsAborted++;
    }
  }

  for (const prefix of settings.prefixes.filter((prefix) => prefix.startsWith('exports/'))) {
    const retention = settings.retentionSeconds ?? config().jobRetentionSeconds;
    report.exportOutputsDeleted += await deleteExpiredOutputs(prefix, retention, now);
  }

  logger.info('janitor run', { report });
  return report;
}

/**
 * Deletes the folders (exports/<user>/<jobId>/) of outputs whose job has expired. An output is
 * written just before its job finishes and the job expires a retention after it finished, so an
 * output younger than the retention always has a live job: only older ones cost a lookup. The area
 * is read a page at a time (S3 lists keys in order, so a folder's objects are adjacent), so that
 * every export kept for the retention is never held in memory at once.
 */
async function deleteExpiredOutputs(prefix: string, retentionSeconds: number, now: number) {
  const seen = new Set<string>();
  let deleted = 0;
  for await (const page of fileStore().listPages(prefix)) {
    for (const object of page) {
      if ((now - object.lastModified.getTime()) / 1000 < retentionSeconds) continue;
      const [area, username, jobId] = object.key.split('/');
      if (area !== 'exports' || !username || !jobId) continue;
      const folder = `${area}/${username}/${jobId}/`;
      if (seen.has(folder)) continue;
      seen.add(folder);
      const job = await jobStore().get(username, jobId, { includeExpired: true });
      if (job && !hasExpired(job, now)) continue;
      if ((await fileStore().deletePrefix(folder)) > 0) {
        recordJobMetric('ExportOutputsExpired');
        deleted++;
      }
    }
  }
  return deleted;
}

/** Whether S3 received a part of the upload after `sinceMs` (epoch ms). */
async function receivedPartSince(job: JobRecord, sinceMs: number): Promise<boolean> {
  if (!job.uploadId) return false;
  const parts = await fileStore().listParts(job.key, job.uploadId);
  return (parts ?? []).some((part) => (part.lastModified?.getTime() ?? 0) > sinceMs);
}

/** Whether an unfinished job now records this upload (uploads: uploads/<user>/<file>; exports: exports/<user>/<jobId>/…). */
async function ownedNow(key: string, uploadId: string): Promise<boolean> {
  const [area, username, third] = key.split('/');
  if (!username || !third) return false;
  if (area === 'exports') {
    const job = await jobStore().get(username, third);
    return job?.uploadId === uploadId && !TERMINAL_STATUSES.has(job.status);
  }
  const slots = await jobStore().activeSlots(username, 'upload');
  for (const slot of slots) {
    const job = await jobStore().get(username, slot.jobId);
    if (job?.uploadId === uploadId) return true;
  }
  return false;
}
