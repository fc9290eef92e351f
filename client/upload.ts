import { AbortedError, ApiError, FileJobsError, NetworkError, TransferError } from './errors.ts';
import { type FetchLike, fetchWithin, type RetryMode } from './http.ts';
import { type PartLayout, PartUrlPool, partRange, partSizeProblem } from './parts.ts';
import { ProgressBatcher, RateLimiter, SpeedMeter } from './progress.ts';
import { type RetryPolicy, retryPolicy, settleWithin, sleep, throwIfAborted, withRetries } from './retry.ts';
import { type PartReader, partReader, type UploadSource } from './sources.ts';
import type {
  CreatedUpload,
  CreateUploadInput,
  FinishedPart,
  Job,
  ReconciledJob,
  SignedPart,
} from './types.ts';

/** What an upload needs from the API; FileJobsClient provides it. */
export interface UploadApi {
  readonly fetch: FetchLike;
  createUpload(input: CreateUploadInput, options?: { retry?: RetryMode }): Promise<CreatedUpload>;
  reconcileUpload(jobId: string, options?: { signal?: AbortSignal | undefined }): Promise<ReconciledJob>;
  signParts(
    jobId: string,
    partNumbers: number[],
    options?: { signal?: AbortSignal | undefined },
  ): Promise<SignedPart[]>;
  reportProgress(jobId: string, parts: FinishedPart[], options?: { retry?: RetryMode }): Promise<Job>;
  completeUpload(jobId: string): Promise<Job>;
  abortUpload(jobId: string): Promise<Job>;
  getJob(jobId: string, options?: { signal?: AbortSignal | undefined }): Promise<Job>;
  findUnfinishedUpload(
    filename: string,
    size: number,
    options?: { signal?: AbortSignal | undefined },
  ): Promise<Job | undefined>;
  storeEmptyFile(
    filename: string,
    options?: { contentType?: string | undefined; overwrite?: boolean | undefined },
  ): Promise<Job>;
}

export interface UploadStart {
  jobId: string;
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  /** True when this run continues an upload begun earlier. */
  resumed: boolean;
  /** Parts S3 already held when this run started, and their bytes. */
  partsOnServer: number;
  bytesOnServer: number;
  /** Parts this run will send. */
  partsToSend: number;
}

export interface UploadProgress {
  jobId: string;
  /** `part`: part `partNumber` just finished; `bytes`: bytes moved within parts in flight. */
  kind: 'part' | 'bytes';
  partNumber?: number;
  /** Bytes in finished parts, counting parts from before a resume. */
  bytesDone: number;
  /** `bytesDone` plus the bytes of parts in flight sent so far: what a smooth progress bar shows. */
  bytesSent: number;
  bytesTotal: number;
  /** Parts finished, counting parts from before a resume. */
  partsDone: number;
  partCount: number;
  /** Parts this run finished. */
  partsSent: number;
  /** Over the last few seconds; undefined at the very start. */
  bytesPerSecond: number | undefined;
  etaSeconds: number | undefined;
  elapsedMs: number;
}

export interface UploadResult {
  job: Job;
  jobId: string;
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  resumed: boolean;
  /** Parts this run sent. */
  partsSent: number;
  /** Parts that were already on the server (from an earlier, interrupted run). */
  partsReused: number;
  /** Part PUTs repeated after a failure. */
  retries: number;
  /** `POST /upload/{jobId}/progress` requests made. */
  progressReports: number;
  elapsedMs: number;
}

export interface UploadOptions {
  source: UploadSource;
  /** The name in the uploads folder. */
  filename: string;
  contentType?: string;
  /** Bytes per part, 5 MiB to 5 GiB; the service chooses (8 MiB, more for huge files) when omitted. */
  partSize?: number;
  /** Parts in flight at once. Default 4. Memory use is about concurrency x partSize. */
  concurrency?: number;
  /** Replace a file of that name in the uploads folder. */
  overwrite?: boolean;
  /**
   * Continue an unfinished upload instead of starting over: `true` looks for an UPLOADING job with
   * this filename and size (also when `POST /upload` answers 409 UploadInProgress); a job id resumes
   * that job. Only the parts S3 lacks are sent.
   */
  resume?: boolean | string;
  signal?: AbortSignal;
  /** When `signal` aborts, leave the job on the server to resume later, instead of aborting it. */
  keepOnAbort?: boolean;
  /** Bandwidth cap over all parts in flight. */
  maxBytesPerSecond?: number;
  onStart?: (start: UploadStart) => void;
  onProgress?: (progress: UploadProgress) => void;
  /** `bytes` progress events come at most this often (ms). Default 200. `part` events always come. */
  progressIntervalMs?: number;
  /**
   * Least time between two progress reports to the server (ms), each carrying every part finished
   * since the last. Default 1000: what others see of the job lags by up to a second, and the
   * service is asked a handful of times per upload instead of once or twice per part.
   */
  reportIntervalMs?: number;
  /** Retries of each part PUT (exponential backoff with jitter). Default: 6 retries from 250 ms up to 15 s. */
  partRetry?: Partial<RetryPolicy>;
  /** Told about problems that do not stop the upload (a progress report given up). */
  onWarning?: (message: string) => void;
}

interface Session {
  jobId: string;
  layout: PartLayout;
  toSend: number[];
  urls: SignedPart[];
  resumed: boolean;
  partsOnServer: number;
  bytesOnServer: number;
}

const MAX_CONCURRENCY = 64;
/** See UploadOptions.reportIntervalMs. */
const DEFAULT_REPORT_INTERVAL_MS = 1000;
/** Chunks of a part body when its bytes are paced (a smooth rate). */
const PACED_CHUNK = 64 * 1024;
/** Chunks of a part body otherwise: fewer, cheaper writes. */
const BODY_CHUNK = 1024 * 1024;
/**
 * Whether part bodies always go as streams. Node's fetch (undici) sends a part faster as a stream of
 * 1 MiB chunks than as one Uint8Array: 48 parts of 8 MiB, 8 in flight, to moto on a loaded 2-core
 * machine took 0.84-1.6 s streamed against 1.4-3.7 s (and 0.84-1.6 s through Node's http). Browsers
 * stream request bodies only over HTTP/2, so there a part goes as it is unless paced or counted.
 */
const STREAM_BODIES = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** Create (or find and resume) the job, send the parts that S3 lacks, complete. */
export async function runUpload(api: UploadApi, options: UploadOptions): Promise<UploadResult> {
  const started = performance.now();
  throwIfAborted(options.signal);
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new FileJobsError(
      'BadConcurrency',
      `concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}`,
    );
  }
  if (options.maxBytesPerSecond !== undefined && !(options.maxBytesPerSecond > 0)) {
    throw new FileJobsError('BadRate', 'the rate limit must be above 0');
  }
  const reader = partReader(options.source);
  try {
    // An empty file has no part to send: the service stores it from its form route, at once.
    if (reader.size === 0) {
      const job = await api.storeEmptyFile(options.filename, {
        contentType: options.contentType,
        overwrite: options.overwrite,
      });
      return {
        job,
        jobId: job.jobId,
        filename: job.filename,
        size: 0,
        partSize: job.partSize,
        partCount: job.partCount,
        resumed: false,
        partsSent: 0,
        partsReused: 0,
        retries: 0,
        progressReports: 0,
        elapsedMs: performance.now() - started,
      };
    }
    if (options.partSize !== undefined) {
      const problem = partSizeProblem(reader.size, options.partSize);
      if (problem) throw new FileJobsError('BadPartSize', problem);
    }
    const session = await openSession(api, reader.size, options);
    options.onStart?.({
      jobId: session.jobId,
      filename: options.filename,
      size: session.layout.size,
      partSize: session.layout.partSize,
      partCount: session.layout.partCount,
      resumed: session.resumed,
      partsOnServer: session.partsOnServer,
      bytesOnServer: session.bytesOnServer,
      partsToSend: session.toSend.length,
    });
    return await new Transfer(api, reader, session, options, concurrency, started).run();
  } finally {
    await reader.close().catch(() => {});
  }
}

async function openSession(api: UploadApi, size: number, options: UploadOptions): Promise<Session> {
  const { signal, filename } = options;
  if (typeof options.resume === 'string') return resumeSession(api, options.resume, size, filename, signal);
  if (options.resume) {
    const unfinished = await api.findUnfinishedUpload(filename, size, { signal });
    if (unfinished) return resumeSession(api, unfinished.jobId, size, filename, signal);
  }
  let created: CreatedUpload;
  try {
    // Never cut halfway: a job created while the caller aborts is killed below, not left behind.
    created = await api.createUpload(
      {
        filename,
        size,
        ...(options.contentType ? { contentType: options.contentType } : {}),
        ...(options.partSize ? { partSize: options.partSize } : {}),
        ...(options.overwrite ? { overwrite: true } : {}),
      },
      // A lost answer to a retried create comes back as 409 UploadInProgress naming our job.
      { retry: options.resume ? 'idempotent' : 'unsent' },
    );
  } catch (error) {
    const holder =
      (error instanceof ApiError &&
        error.code === 'UploadInProgress' &&
        (error.details as { jobId?: unknown })?.jobId) ||
      undefined;
    if (options.resume && typeof holder === 'string') {
      throwIfAborted(signal);
      // The holder is another upload of this name: resume it only if it is this file's size.
      const reconciled = await api.reconcileUpload(holder, { signal });
      if (reconciled.job.size === size && reconciled.job.status === 'UPLOADING') {
        return sessionFrom(reconciled, size);
      }
    }
    throw error;
  }
  const jobId = created.job.jobId;
  if (signal?.aborted)
    await abandon(api, jobId, options, `upload of ${filename} interrupted before any part was sent`);
  return {
    jobId,
    layout: { size, partSize: created.partSize, partCount: created.partCount },
    toSend: Array.from({ length: created.partCount }, (_, index) => index + 1),
    urls: created.parts,
    resumed: false,
    partsOnServer: 0,
    bytesOnServer: 0,
  };
}

async function resumeSession(
  api: UploadApi,
  jobId: string,
  size: number,
  filename: string,
  signal: AbortSignal | undefined,
): Promise<Session> {
  const reconciled = await api.reconcileUpload(jobId, { signal });
  const { job } = reconciled;
  if (job.type !== 'upload') throw new FileJobsError('NotAnUpload', `job ${jobId} is not an upload`);
  if (job.status !== 'UPLOADING') {
    throw new FileJobsError('JobNotActive', `upload job ${jobId} is ${job.status}; it cannot be resumed`);
  }
  if (job.size !== size || job.filename !== filename) {
    throw new FileJobsError(
      'ResumeMismatch',
      `upload job ${jobId} is for ${job.filename} of ${job.size} bytes, not ${filename} of ${size} bytes`,
    );
  }
  return sessionFrom(reconciled, size);
}

function sessionFrom(reconciled: ReconciledJob, size: number): Session {
  const { job } = reconciled;
  const layout = { size, partSize: job.partSize, partCount: job.partCount };
  const uploaded = reconciled.uploadedParts ?? [];
  const missing =
    reconciled.missingParts ??
    Array.from({ length: job.partCount }, (_, index) => index + 1).filter((n) => !uploaded.includes(n));
  return {
    jobId: job.jobId,
    layout,
    toSend: [...missing].sort((a, b) => a - b),
    urls: [],
    resumed: true,
    partsOnServer: uploaded.length,
    bytesOnServer: uploaded.reduce((sum, n) => sum + partRange(layout, n).length, 0),
  };
}

/** The caller aborted: kill the job (or keep it), then throw the AbortedError that says which. */
async function abandon(api: UploadApi, jobId: string, options: UploadOptions, what: string): Promise<never> {
  if (options.keepOnAbort) {
    throw new AbortedError(`${what}; upload job ${jobId} is kept on the server, to resume`, {
      jobId,
      jobType: 'upload',
      outcome: 'kept',
    });
  }
  let job: Job;
  try {
    job = await api.abortUpload(jobId);
  } catch (error) {
    throw new AbortedError(
      `${what}; aborting upload job ${jobId} on the server failed: ${(error as Error).message}`,
      { jobId, jobType: 'upload', outcome: 'kill-failed', cause: error },
    );
  }
  throw new AbortedError(`${what}; upload job ${jobId} aborted on the server, no part left behind`, {
    jobId,
    jobType: 'upload',
    outcome: 'killed',
    job,
  });
}

/** Byte and part counts of one upload, turned into progress events. */
class Tracker {
  partsDone: number;
  bytesDone: number;
  partsSent = 0;
  private readonly inFlight = new Map<number, number>();
  private readonly speed = new SpeedMeter();
  private lastBytesEvent = 0;
  private readonly session: Session;
  private readonly options: UploadOptions;
  private readonly started: number;

  constructor(session: Session, options: UploadOptions, started: number) {
    this.session = session;
    this.options = options;
    this.started = started;
    this.partsDone = session.partsOnServer;
    this.bytesDone = session.bytesOnServer;
  }

  get wantsBytes(): boolean {
    return this.options.onProgress !== undefined;
  }

  sending(partNumber: number, sentOfPart: number): void {
    const before = this.inFlight.get(partNumber) ?? 0;
    this.inFlight.set(partNumber, sentOfPart);
    if (sentOfPart > before) this.speed.add(sentOfPart - before);
    const now = performance.now();
    if (now - this.lastBytesEvent >= (this.options.progressIntervalMs ?? 200)) {
      this.lastBytesEvent = now;
      this.emit('bytes');
    }
  }

  retrying(partNumber: number): void {
    this.inFlight.delete(partNumber);
  }

  done(partNumber: number, length: number): void {
    const before = this.inFlight.get(partNumber) ?? 0;
    this.inFlight.delete(partNumber);
    if (length > before) this.speed.add(length - before);
    this.partsDone++;
    this.partsSent++;
    this.bytesDone += length;
    this.emit('part', partNumber);
  }

  /** A part the server turned out not to hold after all (it will be sent again). */
  lost(length: number): void {
    this.partsDone--;
    this.bytesDone -= length;
  }

  private emit(kind: 'part' | 'bytes', partNumber?: number): void {
    const onProgress = this.options.onProgress;
    if (!onProgress) return;
    let inFlight = 0;
    for (const bytes of this.inFlight.values()) inFlight += bytes;
    const { layout, jobId } = this.session;
    const bytesSent = Math.min(layout.size, this.bytesDone + inFlight);
    const bytesPerSecond = this.speed.rate();
    onProgress({
      jobId,
      kind,
      ...(partNumber === undefined ? {} : { partNumber }),
      bytesDone: this.bytesDone,
      bytesSent,
      bytesTotal: layout.size,
      partsDone: this.partsDone,
      partCount: layout.partCount,
      partsSent: this.partsSent,
      bytesPerSecond,
      etaSeconds: bytesPerSecond ? (layout.size - bytesSent) / bytesPerSecond : undefined,
      elapsedMs: performance.now() - this.started,
    });
  }
}

const retryableS3 = new Set([
  'RequestTimeout',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'OperationAborted',
]);

function isRetryablePut(error: TransferError): boolean {
  if (error.status === undefined) return true;
  if (error.status >= 500 || error.status === 408 || error.status === 429) return true;
  return retryableS3.has(error.code);
}

/** A part body that goes out in chunks, paced by `limiter` and counted through `onBytes`. */
function chunkedBody(
  bytes: Uint8Array,
  limiter: RateLimiter | undefined,
  onBytes: ((sent: number) => void) | undefined,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  let position = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (position >= bytes.byteLength) {
          controller.close();
          return;
        }
        const length = Math.min(limiter ? PACED_CHUNK : BODY_CHUNK, bytes.byteLength - position);
        if (limiter) await limiter.take(length, signal);
        controller.enqueue(bytes.subarray(position, position + length));
        position += length;
        onBytes?.(position);
      },
    },
    { highWaterMark: 0 },
  );
}

/** PUTs one part to its presigned URL; returns S3's ETag, or throws a TransferError / NetworkError. */
export async function putPart(
  fetchFn: FetchLike,
  url: string,
  partNumber: number,
  bytes: Uint8Array,
  options: {
    signal: AbortSignal;
    timeoutMs: number;
    limiter?: RateLimiter | undefined;
    onBytes?: ((sent: number) => void) | undefined;
  },
): Promise<string> {
  const streamed = STREAM_BODIES || options.limiter !== undefined || options.onBytes !== undefined;
  const init: RequestInit & { duplex?: 'half' } = {
    method: 'PUT',
    // S3 needs the length up front: a streamed body still declares it.
    headers: { 'content-length': String(bytes.byteLength) },
    body: streamed
      ? chunkedBody(bytes, options.limiter, options.onBytes, options.signal)
      : (bytes as Uint8Array<ArrayBuffer>),
    ...(streamed ? { duplex: 'half' as const } : {}),
  };
  return fetchWithin(fetchFn, url, init, options, async (response) => {
    const text = await response.text();
    if (response.ok) {
      const etag = response.headers.get('etag');
      if (!etag) {
        throw new TransferError(
          partNumber,
          response.status,
          'NoEtag',
          `S3 took part ${partNumber} but sent no ETag (in a browser, the bucket's CORS must expose ETag)`,
        );
      }
      return etag;
    }
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `Http${response.status}`;
    const detail = /<Message>([^<]+)<\/Message>/.exec(text)?.[1];
    if (response.status === 404 && code === 'NoSuchUpload') {
      throw new TransferError(
        partNumber,
        404,
        'UploadGone',
        'the upload was aborted on the server (killed by another client?)',
      );
    }
    throw new TransferError(
      partNumber,
      response.status,
      code,
      `S3 refused part ${partNumber}: ${response.status} ${code}${detail ? ` (${detail})` : ''}`,
    );
  });
}

class Transfer {
  private readonly api: UploadApi;
  private readonly reader: PartReader;
  private readonly session: Session;
  private readonly options: UploadOptions;
  private readonly concurrency: number;
  private readonly started: number;
  private readonly tracker: Tracker;
  private readonly reporter: ProgressBatcher<FinishedPart>;
  private readonly limiter: RateLimiter | undefined;
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private readonly policy: RetryPolicy;
  private retries = 0;
  private fatal: unknown;

  constructor(
    api: UploadApi,
    reader: PartReader,
    session: Session,
    options: UploadOptions,
    concurrency: number,
    started: number,
  ) {
    this.api = api;
    this.reader = reader;
    this.session = session;
    this.options = options;
    this.concurrency = concurrency;
    this.started = started;
    this.tracker = new Tracker(session, options, started);
    this.signal = options.signal ? AbortSignal.any([options.signal, this.stop.signal]) : this.stop.signal;
    this.limiter = options.maxBytesPerSecond ? new RateLimiter(options.maxBytesPerSecond) : undefined;
    const onRetry = options.partRetry?.onRetry;
    this.policy = retryPolicy({
      retries: 6,
      baseDelayMs: 250,
      maxDelayMs: 15_000,
      ...options.partRetry,
      onRetry: (info) => {
        this.retries++;
        onRetry?.(info);
      },
    });
    const jobId = session.jobId;
    this.reporter = new ProgressBatcher<FinishedPart>(
      // The batcher retries on its own terms; the report must never hold the transfer up.
      (parts) => api.reportProgress(jobId, parts, { retry: 'never' }),
      {
        isFatal: (error) =>
          error instanceof ApiError && (error.code === 'JobNotActive' || error.status === 404),
        onFatal: (error) =>
          this.fail(
            new FileJobsError(
              'UploadGone',
              `upload job ${jobId} is no longer active: ${(error as Error).message}`,
              {
                cause: error,
              },
            ),
          ),
        onDropped: (count, error) =>
          options.onWarning?.(`a progress report of ${count} parts failed: ${(error as Error).message}`),
        minIntervalMs: options.reportIntervalMs ?? DEFAULT_REPORT_INTERVAL_MS,
      },
    );
  }

  private activeCheck: { at: number; result: Promise<void> } | undefined;

  /**
   * Before retrying a failed part: is the job still UPLOADING? A job killed elsewhere makes S3 refuse
   * every part (NoSuchUpload, or a 5xx from some emulators), which no retry fixes. One check serves
   * every part that asks within a second.
   */
  private ensureActive(): Promise<void> {
    const now = performance.now();
    if (!this.activeCheck || now - this.activeCheck.at > 1000) {
      const { jobId } = this.session;
      const result = this.api.getJob(jobId, { signal: this.signal }).then(
        (job) => {
          if (job.status !== 'UPLOADING') {
            const error = new FileJobsError(
              'UploadGone',
              `upload job ${jobId} is ${job.status} on the server (killed by another client?)`,
            );
            this.fail(error);
            throw error;
          }
        },
        // Cannot tell: carry on retrying the part.
        () => {},
      );
      this.activeCheck = { at: now, result };
    }
    return this.activeCheck.result;
  }

  private fail(error: unknown): void {
    this.fatal ??= error;
    this.stop.abort(error);
  }

  private get interrupted(): boolean {
    return this.options.signal?.aborted === true;
  }

  async run(): Promise<UploadResult> {
    const { jobId, layout } = this.session;
    await this.sendAll(this.session.toSend, this.session.urls);
    let job: Job | undefined;
    for (let round = 0; job === undefined; round++) {
      if (this.interrupted) await this.abandon();
      await this.reporter.flush();
      await this.reader.verify();
      try {
        job = await this.complete();
      } catch (error) {
        // S3 lacks parts after all (lost, or of the wrong size): send those again, twice at most. With
        // none missing, a part changed under the completion (S3's InvalidPart): the server went back
        // to UPLOADING, and completing again is all it takes.
        if (!(error instanceof ApiError && error.code === 'PartsIncomplete') || round >= 2) throw error;
        const reconciled = await this.api.reconcileUpload(jobId, { signal: this.options.signal });
        const missing = reconciled.missingParts ?? [];
        for (const partNumber of missing) this.tracker.lost(partRange(layout, partNumber).length);
        if (missing.length > 0) await this.sendAll(missing, []);
      }
    }
    return {
      job,
      jobId,
      filename: this.options.filename,
      size: layout.size,
      partSize: layout.partSize,
      partCount: layout.partCount,
      resumed: this.session.resumed,
      partsSent: this.tracker.partsSent,
      partsReused: this.session.partsOnServer,
      retries: this.retries,
      progressReports: this.reporter.requests,
      elapsedMs: performance.now() - this.started,
    };
  }

  /** Completion is idempotent on the server; it is not cut halfway by the caller's signal. */
  private async complete(): Promise<Job> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await this.api.completeUpload(this.session.jobId);
      } catch (error) {
        if (error instanceof ApiError && error.code === 'CompletionInProgress' && Date.now() < deadline) {
          await sleep(500);
          continue;
        }
        throw error;
      }
    }
  }

  /** Sends `partNumbers` with `concurrency` parts in flight; returns when all are in S3 or throws. */
  private async sendAll(partNumbers: number[], signed: SignedPart[]): Promise<void> {
    const { jobId, layout } = this.session;
    const urls = new PartUrlPool(
      partNumbers,
      (numbers) => this.api.signParts(jobId, numbers, { signal: this.signal }),
      { lookahead: this.concurrency * 4 },
    );
    urls.add(signed);
    let next = 0;
    const worker = async () => {
      while (next < partNumbers.length && !this.signal.aborted) {
        const partNumber = partNumbers[next++]!;
        const { offset, length } = partRange(layout, partNumber);
        // Called before any await, so a stream source is read in part order.
        const bytes = await this.reader.read(offset, length);
        const etag = await this.sendPart(urls, partNumber, bytes);
        this.tracker.done(partNumber, length);
        this.reporter.add({ partNumber, etag, size: length });
      }
    };
    const workers = Array.from({ length: Math.min(this.concurrency, partNumbers.length) }, () =>
      worker().catch((error: unknown) => {
        if (!this.signal.aborted) this.fail(error);
      }),
    );
    await Promise.all(workers);
    if (this.interrupted) return this.abandon();
    if (this.fatal !== undefined) {
      // Keep the job for a later resume: let the server learn what did arrive.
      await settleWithin(this.reporter.flush(), 5000);
      throw this.fatal;
    }
  }

  private async sendPart(urls: PartUrlPool, partNumber: number, bytes: Uint8Array): Promise<string> {
    let resigned = false;
    // Generous: a slow link still moves a part; a stalled connection is retried.
    const timeoutMs =
      120_000 + (bytes.byteLength / (this.options.maxBytesPerSecond ?? 256 * 1024)) * this.concurrency * 1000;
    return withRetries(
      async (attempt) => {
        this.tracker.retrying(partNumber);
        if (attempt > 0) await this.ensureActive();
        const url = await urls.get(partNumber);
        return putPart(this.api.fetch, url, partNumber, bytes, {
          signal: this.signal,
          timeoutMs,
          limiter: this.limiter,
          onBytes: this.tracker.wantsBytes ? (sent) => this.tracker.sending(partNumber, sent) : undefined,
        });
      },
      (error) => {
        if (error instanceof FileJobsError && error.code === 'UploadGone') return false;
        if (error instanceof TransferError) {
          // An expired (or otherwise refused) signature: sign again once and retry at once.
          if (error.status === 403 && !resigned) {
            resigned = true;
            urls.invalidate(partNumber);
            return 0;
          }
          return isRetryablePut(error);
        }
        return error instanceof NetworkError;
      },
      this.policy,
      this.signal,
    );
  }

  /** The caller's signal fired; every worker has stopped. */
  private async abandon(): Promise<never> {
    const { jobId, layout } = this.session;
    const what = `upload of ${this.options.filename} interrupted with ${this.tracker.partsDone} of ${layout.partCount} parts sent`;
    if (this.options.keepOnAbort) {
      await settleWithin(this.reporter.flush(), 5000);
    } else {
      this.reporter.stop();
    }
    return abandon(this.api, jobId, this.options, what);
  }
}
