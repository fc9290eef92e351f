import { open, rename, stat, unlink } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { type ChecksumAlgorithm, type ChecksumHasher, checksumHasher } from '../common/checksums.ts';
import {
  AbortedError,
  ChecksumMismatchError,
  FileJobsError,
  JobFailedError,
  NetworkError,
} from './errors.ts';
import { apiRetryDecision, type FetchLike, networkError } from './http.ts';
import { claimPartialDownload } from './partial-downloads.ts';
import { RateLimiter, SpeedMeter } from './progress.ts';
import { abortedBy, type RetryPolicy, retryPolicy, sleep, throwIfAborted, withRetries } from './retry.ts';
import type { ExportFormat, ExportJob, Job } from './types.ts';

/** What exports and downloads need from the API; FileJobsClient provides it. */
export interface ExportApi {
  readonly fetch: FetchLike;
  startExport(filename: string, format: ExportFormat): Promise<ExportJob>;
  getJob(jobId: string, options?: { signal?: AbortSignal | undefined }): Promise<Job>;
  cancelExport(jobId: string): Promise<ExportJob>;
}

export interface ExportProgress {
  jobId: string;
  status: Job['status'];
  /** Bytes of the source file processed so far. */
  bytesDone: number;
  bytesTotal: number;
  partsDone: number;
  partCount: number;
  bytesPerSecond: number | undefined;
  etaSeconds: number | undefined;
  elapsedMs: number;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** How often to ask (ms). Default 500. */
  pollIntervalMs?: number;
  /** Called after every poll. */
  onProgress?: (progress: ExportProgress) => void;
  /**
   * How long the service may stay unreachable (network errors, 5xx, 429, each after the transport's
   * own retries) before the wait gives up (ms). The export runs on meanwhile. Default 5 minutes.
   */
  outageToleranceMs?: number;
}

export interface ExportOptions extends WaitOptions {
  format?: ExportFormat;
  /** When `signal` aborts, leave the export running instead of cancelling it. */
  keepOnAbort?: boolean;
  onStart?: (job: ExportJob) => void;
}

const ACTIVE = new Set<Job['status']>(['QUEUED', 'RUNNING', 'CANCELLING']);

export const isExportJob = (job: Job): job is ExportJob => job.type === 'export';

/** The name an export downloads as: the source's, with `.gz` for gzip. */
export const downloadName = (job: ExportJob): string =>
  job.format === 'gzip' ? `${job.filename}.gz` : job.filename;

/** Polls `GET /jobs/{jobId}` until the export finishes; resolves with the SUCCEEDED job (and its download URL). */
export async function waitForExport(
  api: ExportApi,
  jobId: string,
  options: WaitOptions = {},
): Promise<ExportJob> {
  const started = performance.now();
  const speed = new SpeedMeter();
  let lastBytes: number | undefined;
  /** When the service stopped answering (performance.now()), while it does not. */
  let downSince: number | undefined;
  for (;;) {
    let job: Job;
    try {
      job = await api.getJob(jobId, { signal: options.signal });
      downSince = undefined;
    } catch (error) {
      // What the transport itself would retry for a GET is an outage; anything else is an answer.
      const outage = apiRetryDecision(error, 0, 'idempotent') !== false;
      if (!outage || options.signal?.aborted) throw error;
      // An export runs for minutes or hours: a service that is down for a while (a deploy, a blip)
      // is waited out, asking less often the longer it lasts.
      downSince ??= performance.now();
      const down = performance.now() - downSince;
      if (down > (options.outageToleranceMs ?? 300_000)) throw error;
      await sleep(Math.min(10_000, 1000 + down / 4), options.signal);
      continue;
    }
    if (!isExportJob(job)) throw new FileJobsError('NotAnExport', `job ${jobId} is an upload, not an export`);
    const { bytesDone, bytesTotal, partsDone, partCount } = job.progress;
    if (lastBytes !== undefined && bytesDone > lastBytes) speed.add(bytesDone - lastBytes);
    lastBytes = bytesDone;
    const bytesPerSecond = speed.rate();
    options.onProgress?.({
      jobId,
      status: job.status,
      bytesDone,
      bytesTotal,
      partsDone,
      partCount,
      bytesPerSecond,
      etaSeconds: bytesPerSecond ? (bytesTotal - bytesDone) / bytesPerSecond : undefined,
      elapsedMs: performance.now() - started,
    });
    if (job.status === 'SUCCEEDED') return job;
    if (!ACTIVE.has(job.status)) throw new JobFailedError(job);
    await sleep(options.pollIntervalMs ?? 500, options.signal);
  }
}

/** Starts an export and waits for it; aborting `signal` cancels it on the server unless `keepOnAbort`. */
export async function runExport(
  api: ExportApi,
  filename: string,
  options: ExportOptions = {},
): Promise<ExportJob> {
  throwIfAborted(options.signal);
  // Never cut halfway: an export started while the caller aborts is cancelled below.
  const job = await api.startExport(filename, options.format ?? 'raw');
  options.onStart?.(job);
  try {
    throwIfAborted(options.signal);
    return await waitForExport(api, job.jobId, options);
  } catch (error) {
    if (!options.signal?.aborted) throw error;
    const what = `export of ${filename} interrupted`;
    if (options.keepOnAbort) {
      throw new AbortedError(`${what}; export job ${job.jobId} keeps running on the server`, {
        jobId: job.jobId,
        jobType: 'export',
        outcome: 'kept',
      });
    }
    let cancelled: ExportJob;
    try {
      cancelled = await api.cancelExport(job.jobId);
    } catch (cancelError) {
      // It may have finished in the meantime: then there is nothing to cancel.
      throw new AbortedError(
        `${what}; cancelling export job ${job.jobId} failed: ${(cancelError as Error).message}`,
        { jobId: job.jobId, jobType: 'export', outcome: 'kill-failed', cause: cancelError },
      );
    }
    throw new AbortedError(`${what}; export job ${job.jobId} cancelled on the server, its output removed`, {
      jobId: job.jobId,
      jobType: 'export',
      outcome: 'killed',
      job: cancelled,
    });
  }
}

export interface DownloadProgress {
  bytesDone: number;
  /** From the job's outputSize or Content-Length, when known. */
  bytesTotal: number | undefined;
  bytesPerSecond: number | undefined;
  etaSeconds: number | undefined;
  elapsedMs: number;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** `onProgress` at most this often (ms), and once at the end. Default 200. */
  progressIntervalMs?: number;
  retry?: Partial<RetryPolicy>;
  /** A connection that sends nothing for this long is dropped and retried. Default 60 s. */
  idleTimeoutMs?: number;
  /** Bandwidth limit, bytes per second (the connection is read no faster). */
  maxBytesPerSecond?: number;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** Bytes taken over from an earlier download of this export to this path that had stopped. */
  resumedFrom: number;
  job: ExportJob;
  /**
   * The job's checksum of the output and whether the bytes written were checked against it (a
   * FULL_OBJECT one is; a COMPOSITE one, of parts, cannot be from the bytes alone). Undefined for an
   * export without a checksum.
   */
  checksum: { algorithm: ChecksumAlgorithm; value: string; verified: boolean } | undefined;
}

/** The SUCCEEDED export with a download URL that will last a while, fetching it again when needed. */
export async function readyExport(
  api: ExportApi,
  jobOrId: string | ExportJob,
  signal?: AbortSignal,
  refresh = false,
): Promise<ExportJob> {
  const fresh = (job: ExportJob) =>
    job.downloadUrl !== undefined && (!job.expiresAt || Date.parse(job.expiresAt) - Date.now() > 30_000);
  if (typeof jobOrId !== 'string' && !refresh && fresh(jobOrId)) return jobOrId;
  const jobId = typeof jobOrId === 'string' ? jobOrId : jobOrId.jobId;
  const job = await api.getJob(jobId, { signal });
  if (!isExportJob(job)) throw new FileJobsError('NotAnExport', `job ${jobId} is an upload, not an export`);
  if (job.status === 'SUCCEEDED' && job.downloadUrl) return job;
  if (ACTIVE.has(job.status)) {
    throw new FileJobsError(
      'ExportNotReady',
      `export job ${jobId} is ${job.status}; it has nothing to download yet`,
    );
  }
  throw new JobFailedError(job, `export job ${jobId} ended ${job.status}; it has nothing to download`);
}

/**
 * A GET through node:http(s). Downloads do not use fetch: Node 24's bundled undici can crash the
 * process (an uncatchable assertion, nodejs/undici#5360) when a server closes the connection while a
 * slowly consumed body is paused under backpressure, which is what writing a download to disk does.
 */
function httpGet(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal | undefined,
  idleMs: number,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = (target.protocol === 'https:' ? httpsRequest : httpRequest)(
      target,
      { method: 'GET', headers, ...(signal ? { signal } : {}) },
      (response) => {
        response.on('error', () => {});
        resolve(response);
      },
    );
    request.setTimeout(idleMs, () =>
      request.destroy(
        Object.assign(new Error(`the download stalled for ${idleMs / 1000} s`), { code: 'ETIMEDOUT' }),
      ),
    );
    request.on('error', reject);
    request.end();
  });
}

class DownloadHttpError extends FileJobsError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(`Http${status}`, message);
    this.status = status;
  }
}

/**
 * Downloads a SUCCEEDED export to `path` (a directory takes the export's own name). Writes to a
 * temporary file beside it and renames at the end, so `path` never holds a partial download; a
 * dropped connection resumes with a Range request, an expired URL is signed again. A download that
 * stops for good (aborted, the network gone, the process killed) keeps its bytes in that file, and
 * the next download of the export to the same path goes on from them (client/partial-downloads.ts).
 *
 * When the job has a full-object checksum (CRC32 for export outputs), the bytes are hashed in order
 * as they are written, across resumed connections, and compared at the end: a mismatch throws
 * ChecksumMismatchError and deletes the temporary file, so nothing lands at `path` (a file already
 * there is left as it was).
 */
export async function downloadToFile(
  api: ExportApi,
  jobOrId: string | ExportJob,
  path: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const { signal } = options;
  let job = await readyExport(api, jobOrId, signal);
  const target = (await stat(path).catch(() => undefined))?.isDirectory()
    ? join(path, downloadName(job))
    : path;
  if (options.maxBytesPerSecond !== undefined && !(options.maxBytesPerSecond > 0)) {
    throw new FileJobsError('BadRate', 'the rate limit must be above 0');
  }
  const limiter = options.maxBytesPerSecond ? new RateLimiter(options.maxBytesPerSecond) : undefined;
  const partial = await claimPartialDownload(target, job.jobId);
  const temp = partial.path;
  const started = performance.now();
  const speed = new SpeedMeter();
  let written = partial.bytes;
  let total = job.outputSize;
  let lastEvent = 0;
  const report = (force: boolean) => {
    const now = performance.now();
    if (!options.onProgress || (!force && now - lastEvent < (options.progressIntervalMs ?? 200))) return;
    lastEvent = now;
    const bytesPerSecond = speed.rate();
    options.onProgress({
      bytesDone: written,
      bytesTotal: total,
      bytesPerSecond,
      etaSeconds: bytesPerSecond && total !== undefined ? (total - written) / bytesPerSecond : undefined,
      elapsedMs: now - started,
    });
  };

  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(temp, written > 0 ? 'r+' : 'w');
  } catch (error) {
    throw new FileJobsError('CannotWrite', `cannot write ${target}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let resigned = false;
  let needFreshUrl = false;
  const expected = job.checksum;
  const verifying = expected?.type === 'FULL_OBJECT';
  // Holds exactly the bytes [0, written) of the file, in order.
  let hasher: ChecksumHasher | undefined = verifying ? checksumHasher(expected.algorithm) : undefined;
  let resumedFrom = 0;
  try {
    if (total !== undefined && written > total) {
      // More bytes than the output has: not its bytes after all.
      written = 0;
      await handle.truncate(0);
    }
    if (written > 0) {
      resumedFrom = written;
      // The checksum covers the whole output: hash the bytes kept, as if they had just arrived.
      if (hasher) await hashFileRange(handle, written, hasher);
      report(true);
    }
    await withRetries(
      async () => {
        if (needFreshUrl) {
          needFreshUrl = false;
          job = await readyExport(api, job.jobId, signal, true);
        }
        const idleMs = options.idleTimeoutMs ?? 60_000;
        const headers: Record<string, string> = written > 0 ? { range: `bytes=${written}-` } : {};
        const url = job.downloadUrl!;
        let response: IncomingMessage;
        try {
          response = await httpGet(url, headers, signal, idleMs);
        } catch (error) {
          if (signal?.aborted) throw abortedBy(signal);
          throw networkError(url, error);
        }
        const status = response.statusCode ?? 0;
        if (status === 416 && total !== undefined && written === total) {
          response.resume();
          return;
        }
        if (status < 200 || status >= 300) {
          let text = '';
          for await (const chunk of response) text += String(chunk);
          const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
          throw new DownloadHttpError(status, `the download answered ${status}${code ? ` ${code}` : ''}`);
        }
        if (status === 200 && written > 0) {
          // The server ignored the Range: start over.
          written = 0;
          await handle.truncate(0);
          if (verifying) hasher = checksumHasher(expected.algorithm);
        }
        if (status === 200) {
          const length = Number(response.headers['content-length']);
          if (Number.isFinite(length) && length > 0) total ??= length;
        }
        try {
          for await (const chunk of response as AsyncIterable<Buffer>) {
            await limiter?.take(chunk.byteLength, signal);
            await handle.write(chunk, 0, chunk.byteLength, written);
            hasher?.update(chunk);
            written += chunk.byteLength;
            speed.add(chunk.byteLength);
            report(false);
          }
        } catch (error) {
          if (signal?.aborted) throw abortedBy(signal);
          if (error instanceof FileJobsError) throw error;
          throw networkError(url, error);
        }
        if (total !== undefined && written < total) {
          // The connection ended early without an error: go on from where it stopped.
          throw new NetworkError(
            url,
            'ECONNRESET',
            `the download stopped after ${written} of ${total} bytes`,
          );
        }
      },
      (error) => {
        if (error instanceof DownloadHttpError) {
          // An expired URL: sign it again (by asking for the job) and retry at once.
          if (error.status === 403 && !resigned) {
            resigned = true;
            needFreshUrl = true;
            return 0;
          }
          return worthRetrying(error.status);
        }
        return error instanceof NetworkError;
      },
      retryPolicy({ retries: 5, ...options.retry }),
      signal,
    );
    if (total !== undefined && written !== total) {
      throw new FileJobsError('DownloadIncomplete', `the download ended after ${written} of ${total} bytes`);
    }
    if (hasher && expected) {
      const actual = await hasher.digest();
      if (actual !== expected.value) {
        throw new ChecksumMismatchError(
          `the download of export job ${job.jobId} is corrupt: its ${expected.algorithm} is ${actual} where the export's is ${expected.value} (the output was changed or damaged after the export finished, or on the way); nothing was written to ${target}`,
          {
            direction: 'download',
            jobId: job.jobId,
            algorithm: expected.algorithm,
            expected: expected.value,
            actual,
          },
        );
      }
    }
    report(true);
    await handle.close();
    await rename(temp, target);
    return {
      path: target,
      bytes: written,
      resumedFrom,
      job,
      checksum: expected
        ? { algorithm: expected.algorithm, value: expected.value, verified: hasher !== undefined }
        : undefined,
    };
  } catch (error) {
    await handle.close().catch(() => {});
    // Bytes that a later try can go on from are kept; wrong ones, or ones of an output the service
    // no longer gives (a refusal that is not a 5xx), are not.
    const refused =
      error instanceof ChecksumMismatchError ||
      (error instanceof DownloadHttpError && !worthRetrying(error.status));
    if (written === 0 || refused) await unlink(temp).catch(() => {});
    throw error;
  }
}

/** Whether S3's answer to a download may change if asked again: its faults, timeouts, throttling. */
const worthRetrying = (status: number) => status >= 500 || status === 408 || status === 429;

/** Feeds the first `length` bytes of an open file to `hasher`, a MiB at a time. */
async function hashFileRange(
  handle: Awaited<ReturnType<typeof open>>,
  length: number,
  hasher: ChecksumHasher,
) {
  const buffer = Buffer.alloc(Math.min(length, 1024 * 1024));
  for (let offset = 0; offset < length; ) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - offset), offset);
    if (bytesRead === 0) throw new Error(`the partial download ended at ${offset} of ${length} bytes`);
    hasher.update(buffer.subarray(0, bytesRead));
    offset += bytesRead;
  }
}

/**
 * Opens the download of a SUCCEEDED export as a fetch Response (any runtime); the caller reads its
 * body. In Node, read it promptly (see httpGet above) or use downloadToFile.
 */
export async function openDownload(
  api: ExportApi,
  jobOrId: string | ExportJob,
  signal?: AbortSignal,
): Promise<{ job: ExportJob; response: Response }> {
  const job = await readyExport(api, jobOrId, signal);
  let response: Response;
  try {
    response = await api.fetch(job.downloadUrl!, signal ? { signal } : {});
  } catch (error) {
    if (signal?.aborted) throw abortedBy(signal);
    throw networkError(job.downloadUrl!, error);
  }
  if (!response.ok)
    throw new FileJobsError(`Http${response.status}`, `the download answered ${response.status}`);
  return { job, response };
}
