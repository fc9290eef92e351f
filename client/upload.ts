import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  checksumHasher,
  DEFAULT_CHECKSUM_ALGORITHM,
  FullObjectCrc,
  isCrcAlgorithm,
} from '../common/checksums.ts';
import { ErrorCode } from '../common/error-codes.ts';
import { type PartPlan, partRange, partSizeProblem } from '../common/part-plan.ts';
import {
  AbortedError,
  ApiError,
  ChecksumMismatchError,
  FileJobsError,
  NetworkError,
  TransferError,
} from './errors.ts';
import { type FetchLike, fetchWithin, type RetryMode } from './http.ts';
import { ChecksummedUrlPool, PartUrlPool } from './parts.ts';
import { ProgressBatcher, RateLimiter, SpeedMeter } from './progress.ts';
import {
  abortedBy,
  type RetryPolicy,
  retryPolicy,
  settleWithin,
  sleep,
  throwIfAborted,
  withRetries,
} from './retry.ts';
import { type PartReader, partReader, type UploadSource } from './sources.ts';
import type {
  CreatedUpload,
  CreateUploadInput,
  FinishedPart,
  Job,
  PartToSign,
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
  signChecksummedParts(
    jobId: string,
    parts: PartToSign[],
    options?: { signal?: AbortSignal | undefined },
  ): Promise<SignedPart[]>;
  reportProgress(jobId: string, parts: FinishedPart[], options?: { retry?: RetryMode }): Promise<Job>;
  completeUpload(jobId: string, options?: { checksum?: string | undefined }): Promise<Job>;
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

/** The upload a run works on: its job, the file, the plan. */
export interface UploadRun {
  jobId: string;
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  /** True when this run continues an upload begun earlier. */
  resumed: boolean;
}

export interface UploadStart extends UploadRun {
  /** Parts S3 already held when this run started, and their bytes. */
  partsOnServer: number;
  bytesOnServer: number;
  /** Parts this run will send (besides parts on the server found to differ from the file). */
  partsToSend: number;
  /**
   * Parts on the server this run reads and compares by checksum before reusing them (all of
   * `partsOnServer`, for an upload with a checksum algorithm); a part that differs is sent again.
   */
  partsToVerify: number;
  /** The upload's checksum algorithm (a resumed job keeps the one it was created with). */
  checksumAlgorithm: ChecksumAlgorithm | undefined;
}

export interface UploadProgress {
  jobId: string;
  /**
   * `part`: part `partNumber` just finished; `bytes`: bytes moved within parts in flight;
   * `verified`: part `partNumber`, which S3 already held, was read and compared by checksum
   * (`matched`: reused; otherwise it is sent again).
   */
  kind: 'part' | 'bytes' | 'verified';
  partNumber?: number;
  /** `part`: the part's checksum (base64), for an upload with a checksum algorithm. */
  checksum?: string;
  /** `verified`: whether S3's copy of the part has the file's checksum. */
  matched?: boolean;
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

export interface UploadResult extends UploadRun {
  job: Job;
  /** Parts this run sent. */
  partsSent: number;
  /** Parts that were already on the server (from an earlier, interrupted run) and were kept. */
  partsReused: number;
  /**
   * Parts the server held whose checksum differed from the file's bytes (the file changed since
   * they were sent): sent again, and counted in `partsSent`.
   */
  partsChanged: number;
  checksumAlgorithm: ChecksumAlgorithm | undefined;
  /**
   * The whole file's CRC (base64) that the client computed from the bytes it read and S3 verified at
   * completion (CRC algorithms); `job.checksum` is S3's own.
   */
  checksum: string | undefined;
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
  /**
   * Parts in flight at once. Default 4. Memory use is about concurrency x partSize; with checksums,
   * parts are also read ahead while their URLs (which sign their checksums) are asked for in
   * batches: 64 MiB of them, at least `concurrency` parts and at most 4 x concurrency.
   */
  concurrency?: number;
  /** Replace a file of that name in the uploads folder. */
  overwrite?: boolean;
  /**
   * S3 checksums, on by default (CRC32, computed as each part is read: a few percent of the
   * time): every part is checked by S3 against the checksum of the bytes read from the source, the
   * whole file against their combined CRC at completion, and parts already on the server are compared
   * with the file before a resume reuses them. Another algorithm, or `false` for none. A resumed job
   * keeps the algorithm it was created with.
   */
  checksumAlgorithm?: ChecksumAlgorithm | false;
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

/** A part this run handles: to send, or (with `expected`, S3's checksum of it) to verify first. */
interface WorkItem {
  partNumber: number;
  expected?: string | undefined;
}

interface Session {
  jobId: string;
  layout: PartPlan;
  algorithm: ChecksumAlgorithm | undefined;
  items: WorkItem[];
  urls: SignedPart[];
  resumed: boolean;
  partsOnServer: number;
  bytesOnServer: number;
}

const MAX_CONCURRENCY = 64;
/**
 * How far parts are read ahead of the PUTs with checksums (see UploadOptions.concurrency). A signing
 * request goes out with half of it gathered, so the other half covers its round trip: with 8 MiB
 * parts, a request per 4 parts.
 */
const READ_AHEAD_BYTES = 64 * 1024 * 1024;
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

/** The service's 409 ChecksumMismatch at completion, as the typed error that says what happened and what to do. */
export function completionMismatch(
  jobId: string,
  error: ApiError,
  checksum: string | undefined,
  algorithm: ChecksumAlgorithm | undefined,
): ChecksumMismatchError {
  return new ChecksumMismatchError(
    `S3 refused to complete upload job ${jobId}: the parts it holds do not make the file whose ${algorithm ?? 'CRC'} is ${checksum ?? '(not sent)'} (${error.message}); the job stays UPLOADING, and resuming it sends again the parts that differ from the file`,
    { direction: 'upload', jobId, algorithm, expected: checksum, cause: error },
  );
}

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
  const wanted = options.checksumAlgorithm;
  if (wanted !== undefined && wanted !== false && !CHECKSUM_ALGORITHMS.includes(wanted)) {
    throw new FileJobsError(
      'BadChecksumAlgorithm',
      `the checksum algorithm must be one of ${CHECKSUM_ALGORITHMS.join(', ')}, not ${String(wanted)}`,
    );
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
        partsChanged: 0,
        checksumAlgorithm: job.checksum?.algorithm,
        checksum: job.checksum?.value,
        retries: 0,
        progressReports: 0,
        elapsedMs: performance.now() - started,
      };
    }
    if (options.partSize !== undefined) {
      const problem = partSizeProblem(reader.size, options.partSize);
      if (problem) throw new FileJobsError('BadPartSize', `the part size ${problem}`);
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
      partsToSend: session.items.filter((item) => item.expected === undefined).length,
      partsToVerify: session.items.filter((item) => item.expected !== undefined).length,
      checksumAlgorithm: session.algorithm,
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
  const wanted =
    options.checksumAlgorithm === false
      ? undefined
      : (options.checksumAlgorithm ?? DEFAULT_CHECKSUM_ALGORITHM);
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
        ...(wanted ? { checksumAlgorithm: wanted } : {}),
      },
      // Retried under one Idempotency-Key: a lost answer comes back as the job it made.
      {},
    );
  } catch (error) {
    const holder =
      (error instanceof ApiError &&
        error.code === ErrorCode.UploadInProgress &&
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
  const algorithm = created.job.checksumAlgorithm;
  if (wanted && !algorithm) {
    options.onWarning?.(`the service did not take checksumAlgorithm ${wanted}: uploading without checksums`);
  }
  return {
    jobId,
    layout: { size, partSize: created.partSize, partCount: created.partCount },
    algorithm,
    items: Array.from({ length: created.partCount }, (_, index) => ({ partNumber: index + 1 })),
    // A URL of an upload with checksums signs the part's checksum: none can exist before the bytes are read.
    urls: algorithm ? [] : created.parts,
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
    throw new FileJobsError(
      ErrorCode.JobNotActive,
      `upload job ${jobId} is ${job.status}; it cannot be resumed`,
    );
  }
  if (job.size !== size || job.filename !== filename) {
    throw new FileJobsError(
      'ResumeMismatch',
      `upload job ${jobId} is for ${job.filename} of ${job.size} bytes, not ${filename} of ${size} bytes`,
    );
  }
  return sessionFrom(reconciled, size);
}

/**
 * The plan of a resumed upload. Without a checksum algorithm, the parts S3 holds are trusted (the
 * CLI checks the file's size and modification time before resuming); with one, each is read again
 * and reused only if its checksum is the one S3 holds, and a part S3 holds without a checksum is
 * sent again.
 */
function sessionFrom(reconciled: ReconciledJob, size: number): Session {
  const { job } = reconciled;
  const layout = { size, partSize: job.partSize, partCount: job.partCount };
  const all = Array.from({ length: job.partCount }, (_, index) => index + 1);
  const uploaded = new Set(reconciled.uploadedParts ?? []);
  const missing = new Set(reconciled.missingParts ?? all.filter((n) => !uploaded.has(n)));
  const algorithm = job.checksumAlgorithm;
  const bytesOf = (numbers: number[]) => numbers.reduce((sum, n) => sum + partRange(layout, n).length, 0);
  if (!algorithm) {
    const held = all.filter((n) => !missing.has(n));
    return {
      jobId: job.jobId,
      layout,
      algorithm,
      items: all.filter((n) => missing.has(n)).map((partNumber) => ({ partNumber })),
      urls: [],
      resumed: true,
      partsOnServer: held.length,
      bytesOnServer: bytesOf(held),
    };
  }
  const checksums = new Map<number, string>();
  for (const part of reconciled.parts ?? []) {
    if (part.checksum && !missing.has(part.partNumber)) checksums.set(part.partNumber, part.checksum);
  }
  const held = all.filter((n) => checksums.has(n));
  return {
    jobId: job.jobId,
    layout,
    algorithm,
    // Every part, in order, so that a stream is read once, front to back.
    items: all.map((partNumber) => ({ partNumber, expected: checksums.get(partNumber) })),
    urls: [],
    resumed: true,
    partsOnServer: held.length,
    bytesOnServer: bytesOf(held),
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
    // A resumed upload starts from what the server already holds.
    this.partsDone = session.partsOnServer;
    this.bytesDone = session.bytesOnServer;
    this.session = session;
    this.options = options;
    this.started = started;
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

  done(partNumber: number, length: number, checksum: string | undefined): void {
    const before = this.inFlight.get(partNumber) ?? 0;
    this.inFlight.delete(partNumber);
    if (length > before) this.speed.add(length - before);
    this.partsDone++;
    this.partsSent++;
    this.bytesDone += length;
    this.emit('part', partNumber, checksum === undefined ? {} : { checksum });
  }

  /** A part the server turned out not to hold after all (it will be sent again). */
  lost(length: number): void {
    this.partsDone--;
    this.bytesDone -= length;
  }

  /** A part S3 held was compared with the file: reused when `matched`, else sent again. */
  verified(partNumber: number, length: number, matched: boolean): void {
    if (!matched) this.lost(length);
    this.emit('verified', partNumber, { matched });
  }

  private emit(kind: UploadProgress['kind'], partNumber?: number, extra: Partial<UploadProgress> = {}): void {
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
      ...extra,
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
  // The body S3 received does not match the checksum of the bytes the client read and sent: they
  // changed on the way, and sending the same bytes again is the cure.
  'BadDigest',
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
    /** The headers the URL signs (SignedPart.headers), sent as they are. */
    headers?: Record<string, string> | undefined;
  },
): Promise<string> {
  const streamed = STREAM_BODIES || options.limiter !== undefined || options.onBytes !== undefined;
  const init: RequestInit & { duplex?: 'half' } = {
    method: 'PUT',
    // S3 needs the length up front: a streamed body still declares it.
    headers: { 'content-length': String(bytes.byteLength), ...options.headers },
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
        ErrorCode.UploadGone,
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
  /** Each part's checksum, as read from the source (sent or found on the server): the whole file's CRC comes from them. */
  private readonly checksums = new Map<number, string>();
  private partsChanged = 0;

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
          error instanceof ApiError && (error.code === ErrorCode.JobNotActive || error.status === 404),
        onFatal: (error) =>
          this.fail(
            new FileJobsError(
              ErrorCode.UploadGone,
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
              ErrorCode.UploadGone,
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
    const { jobId, layout, algorithm } = this.session;
    await this.sendAll(this.session.items, this.session.urls);
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
        if (!(error instanceof ApiError && error.code === ErrorCode.PartsIncomplete) || round >= 2)
          throw error;
        const reconciled = await this.api.reconcileUpload(jobId, { signal: this.options.signal });
        const missing = reconciled.missingParts ?? [];
        for (const partNumber of missing) this.tracker.lost(partRange(layout, partNumber).length);
        if (missing.length > 0)
          await this.sendAll(
            missing.map((partNumber) => ({ partNumber })),
            [],
          );
      }
    }
    const checksum = this.wholeFileCrc();
    // S3 was given our CRC to check; one it reports otherwise means the object is not what was read.
    if (
      checksum !== undefined &&
      job.checksum?.type === 'FULL_OBJECT' &&
      job.checksum.algorithm === algorithm &&
      job.checksum.value !== checksum
    ) {
      throw new ChecksumMismatchError(
        `upload job ${jobId} completed, but S3 reports the ${algorithm} ${job.checksum.value} for ${this.options.filename} where the bytes read have ${checksum}`,
        { direction: 'upload', jobId, algorithm, expected: checksum, actual: job.checksum.value },
      );
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
      partsReused: this.session.partsOnServer - this.partsChanged,
      partsChanged: this.partsChanged,
      checksumAlgorithm: algorithm,
      checksum,
      retries: this.retries,
      progressReports: this.reporter.requests,
      elapsedMs: performance.now() - this.started,
    };
  }

  /** The whole file's CRC from its parts' (read in parallel, never front to back), for S3 to check at completion. */
  private wholeFileCrc(): string | undefined {
    const { algorithm, layout } = this.session;
    if (!algorithm || !isCrcAlgorithm(algorithm)) return undefined;
    const crc = new FullObjectCrc(algorithm);
    for (let partNumber = 1; partNumber <= layout.partCount; partNumber++) {
      const checksum = this.checksums.get(partNumber);
      if (checksum === undefined) return undefined;
      crc.append(checksum, partRange(layout, partNumber).length);
    }
    return crc.digest();
  }

  /** Completion is idempotent on the server; it is not cut halfway by the caller's signal. */
  private async complete(): Promise<Job> {
    const deadline = Date.now() + 60_000;
    const checksum = this.wholeFileCrc();
    for (;;) {
      try {
        return await this.api.completeUpload(this.session.jobId, checksum ? { checksum } : {});
      } catch (error) {
        if (error instanceof ApiError && error.code === ErrorCode.ChecksumMismatch)
          throw completionMismatch(this.session.jobId, error, checksum, this.session.algorithm);
        if (
          error instanceof ApiError &&
          error.code === ErrorCode.CompletionInProgress &&
          Date.now() < deadline
        ) {
          await sleep(500);
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * Handles `items` with `concurrency` parts in flight: sends each, or first compares a part S3
   * holds with the file and sends it only if it differs. Returns when all are in S3, or throws.
   */
  private async sendAll(items: WorkItem[], signed: SignedPart[]): Promise<void> {
    const { jobId, layout, algorithm } = this.session;
    let urls: UrlSource;
    let window = this.concurrency;
    if (algorithm) {
      // Parts are read this far ahead of the PUTs so that their URLs (which sign their checksums) are
      // asked for in batches off the critical path, while memory stays bounded.
      const readAhead = Math.min(
        4 * this.concurrency,
        Math.max(this.concurrency, Math.ceil(READ_AHEAD_BYTES / layout.partSize)),
      );
      window += readAhead;
      urls = new ChecksummedUrlPool(
        (parts) => this.api.signChecksummedParts(jobId, parts, { signal: this.signal }),
        { minBatch: Math.max(1, Math.ceil(readAhead / 2)) },
      );
    } else {
      const pool = new PartUrlPool(
        items.map((item) => item.partNumber),
        (numbers) => this.api.signParts(jobId, numbers, { signal: this.signal }),
        { lookahead: this.concurrency * 4 },
      );
      pool.add(signed);
      urls = pool;
    }
    const feed = new PartFeed(this.reader, layout, items, algorithm, window, this.signal, (part) => {
      if (
        urls instanceof ChecksummedUrlPool &&
        part.checksum !== undefined &&
        part.checksum !== part.expected
      )
        urls.ready(part.partNumber, part.checksum);
    });
    const worker = async () => {
      while (!this.signal.aborted) {
        const next = feed.next();
        if (!next) return;
        const part = await next;
        const { partNumber, checksum } = part;
        const { length } = partRange(layout, partNumber);
        try {
          if (part.expected !== undefined) {
            const matched = checksum === part.expected;
            this.tracker.verified(partNumber, length, matched);
            if (matched) {
              this.checksums.set(partNumber, checksum);
              continue;
            }
            this.partsChanged++;
          }
          const etag = await this.sendPart(urls, partNumber, part.bytes);
          if (checksum !== undefined) this.checksums.set(partNumber, checksum);
          if (urls instanceof ChecksummedUrlPool) urls.forget(partNumber);
          this.tracker.done(partNumber, length, checksum);
          this.reporter.add({
            partNumber,
            etag,
            size: length,
            ...(checksum === undefined ? {} : { checksum }),
          });
        } finally {
          feed.release();
        }
      }
    };
    const workers = Array.from({ length: Math.min(this.concurrency, items.length) }, () =>
      worker().catch((error: unknown) => {
        if (!this.signal.aborted) this.fail(error);
      }),
    );
    await Promise.all(workers);
    feed.stop();
    if (this.interrupted) return this.abandon();
    if (this.fatal !== undefined) {
      // Keep the job for a later resume: let the server learn what did arrive.
      await settleWithin(this.reporter.flush(), 5000);
      throw this.fatal;
    }
  }

  private async sendPart(urls: UrlSource, partNumber: number, bytes: Uint8Array): Promise<string> {
    let resigned = false;
    // Generous: a slow link still moves a part; a stalled connection is retried.
    const timeoutMs =
      120_000 + (bytes.byteLength / (this.options.maxBytesPerSecond ?? 256 * 1024)) * this.concurrency * 1000;
    return withRetries(
      async (attempt) => {
        this.tracker.retrying(partNumber);
        if (attempt > 0) await this.ensureActive();
        const { url, headers } = await urls.signed(partNumber);
        return putPart(this.api.fetch, url, partNumber, bytes, {
          signal: this.signal,
          timeoutMs,
          headers,
          limiter: this.limiter,
          onBytes: this.tracker.wantsBytes ? (sent) => this.tracker.sending(partNumber, sent) : undefined,
        });
      },
      (error) => {
        if (error instanceof FileJobsError && error.code === ErrorCode.UploadGone) return false;
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

/** Where a part's URL comes from: signed ahead by part number, or by checksum once the part was read. */
type UrlSource = Pick<PartUrlPool, 'signed' | 'invalidate'>;

interface ReadPart {
  partNumber: number;
  bytes: Uint8Array;
  /** The checksum of `bytes`, computed as they were read (with a checksum algorithm). */
  checksum: string | undefined;
  /** S3's checksum of the part, for a part it holds: reused only if equal. */
  expected: string | undefined;
}

interface Slot {
  promise: Promise<ReadPart>;
  resolve: (part: ReadPart) => void;
  reject: (error: unknown) => void;
  settled: boolean;
}

/**
 * The parts of a transfer, read from the source in order, one read at a time (a stream needs the
 * order; a file is read far faster than it is sent), each hashed right as it is read: every part is
 * read once. At most `window` parts are in memory, read and not yet released (sent, or found on the
 * server), whatever the file's size.
 */
class PartFeed {
  private readonly reader: PartReader;
  private readonly layout: PartPlan;
  private readonly items: WorkItem[];
  private readonly algorithm: ChecksumAlgorithm | undefined;
  private readonly window: number;
  private readonly signal: AbortSignal;
  private readonly onRead: (part: ReadPart) => void;
  private readonly slots: (Slot | undefined)[] = [];
  private taken = 0;
  private held = 0;
  private wake: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private stopped = false;

  constructor(
    reader: PartReader,
    layout: PartPlan,
    items: WorkItem[],
    algorithm: ChecksumAlgorithm | undefined,
    window: number,
    signal: AbortSignal,
    onRead: (part: ReadPart) => void,
  ) {
    this.reader = reader;
    this.layout = layout;
    this.items = items;
    this.algorithm = algorithm;
    this.window = window;
    this.signal = signal;
    this.onRead = onRead;
    signal.addEventListener('abort', this.stop, { once: true });
    void this.pump();
  }

  /** The next part in order (read, or being read), or undefined when every part was handed out. */
  next(): Promise<ReadPart> | undefined {
    if (this.taken >= this.items.length) return undefined;
    const index = this.taken++;
    if (this.failure && !this.slots[index]) return Promise.reject(this.failure.error);
    const slot = this.slot(index);
    // Handed out and read: the slot lets go of the bytes, which the worker now holds (a slot still
    // being read is let go by the reader).
    if (slot.settled) this.slots[index] = undefined;
    return slot.promise;
  }

  /** A part handed out is done with: another may be read. */
  release(): void {
    this.held--;
    this.poke();
  }

  /** No more reads (the transfer ended, or was aborted). */
  readonly stop = (): void => {
    this.stopped = true;
    this.signal.removeEventListener('abort', this.stop);
    this.poke();
  };

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private slot(index: number): Slot {
    let slot = this.slots[index];
    if (!slot) {
      let resolve!: (part: ReadPart) => void;
      let reject!: (error: unknown) => void;
      const promise = new Promise<ReadPart>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // A part nobody asks for after a failure must not count as an unhandled rejection.
      promise.catch(() => {});
      const created: Slot = {
        promise,
        resolve: (part) => {
          created.settled = true;
          resolve(part);
        },
        reject: (error) => {
          created.settled = true;
          reject(error);
        },
        settled: false,
      };
      slot = created;
      this.slots[index] = slot;
    }
    return slot;
  }

  private async pump(): Promise<void> {
    let index = 0;
    try {
      for (; index < this.items.length; index++) {
        while (this.held >= this.window && !this.stopped)
          await new Promise<void>((wake) => (this.wake = wake));
        if (this.stopped)
          throw this.signal.aborted ? abortedBy(this.signal) : new Error('the transfer ended');
        const { partNumber, expected } = this.items[index]!;
        const { offset, length } = partRange(this.layout, partNumber);
        const bytes = await this.reader.read(offset, length);
        let checksum: string | undefined;
        if (this.algorithm) {
          const hasher = checksumHasher(this.algorithm);
          hasher.update(bytes);
          checksum = await hasher.digest();
        }
        this.held++;
        const part = { partNumber, bytes, checksum, expected };
        this.onRead(part);
        const slot = this.slot(index);
        slot.resolve(part);
        // Taken already (a worker waits on it), or kept for the worker that will ask.
        if (index < this.taken) this.slots[index] = undefined;
      }
    } catch (error) {
      this.failure = { error };
      for (let rest = index; rest < this.slots.length; rest++) this.slots[rest]?.reject(error);
    }
  }
}
