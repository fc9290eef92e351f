import { ErrorCode } from '../common/error-codes.ts';
import { IDEMPOTENCY_KEY_HEADER } from '../common/idempotency.ts';
import { MAX_PARTS_PER_REQUEST } from '../common/part-plan.ts';
import { ApiError, FileJobsError } from './errors.ts';
import {
  type DownloadOptions,
  type DownloadResult,
  downloadToFile,
  type ExportApi,
  type ExportOptions,
  isExportJob,
  openDownload,
  runExport,
  type WaitOptions,
  waitForExport,
} from './exports.ts';
import { type CallOptions, type FetchLike, type RetryMode, Transport } from './http.ts';
import { type RetryPolicy, retryPolicy } from './retry.ts';
import { fileSource } from './sources.ts';
import type {
  CancelledExports,
  CreatedUpload,
  CreateUploadInput,
  ExportFormat,
  ExportJob,
  FinishedPart,
  Health,
  Job,
  JobsPage,
  JobsQuery,
  KilledUploads,
  PartToSign,
  ReconciledJob,
  SignedPart,
  SignInResult,
  StoredFile,
} from './types.ts';
import {
  completionMismatch,
  runUpload,
  type UploadApi,
  type UploadOptions,
  type UploadResult,
} from './upload.ts';

/** A request's Idempotency-Key header: the caller's key, or a fresh random one. */
const idempotencyHeader = (key: string | undefined): Record<string, string> => ({
  [IDEMPOTENCY_KEY_HEADER]: key ?? globalThis.crypto.randomUUID(),
});

export interface ClientOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:3000` or the HTTP API's invoke URL. */
  apiUrl: string;
  /** A token from an earlier sign-in; `signIn` sets one too. */
  token?: string | undefined;
  /** Defaults to the global fetch. */
  fetch?: FetchLike;
  /** Retries of API calls (backoff with jitter). Default: 5 retries from 200 ms, at most 10 s apart. */
  retry?: Partial<RetryPolicy>;
  /** Timeout of one API request (ms). Default 30 s. */
  requestTimeoutMs?: number;
  userAgent?: string;
  /**
   * Renew the token (`POST /auth/renew`) before a call when a third or less of its life is left, so
   * that an upload or export that runs for hours outlives the token it began with (up to the
   * sign-in's end, SESSION_MAX_HOURS). Default true.
   */
  renewToken?: boolean;
  /** Told of each renewed token, e.g. to store it (the CLI keeps it for its next run). */
  onTokenRenewed?: (renewed: SignInResult) => void;
}

/** The lifetime a JWT states (`iat`, `exp`, Unix seconds), read without checking it; undefined if it is no JWT. */
function tokenLifetime(token: string): { issuedAt: number; expiresAt: number } | undefined {
  try {
    const claims = JSON.parse(new TextDecoder().decode(base64urlBytes(token.split('.')[1] ?? ''))) as {
      iat?: unknown;
      exp?: unknown;
    };
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number') return undefined;
    return { issuedAt: claims.iat, expiresAt: claims.exp };
  } catch {
    return undefined;
  }
}

function base64urlBytes(text: string): Uint8Array {
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

type Signal = { signal?: AbortSignal | undefined };

/**
 * A typed client for the file-jobs API. Every route has a method; `upload`, `exportFile` and
 * `downloadToFile` run the long flows (parallel parts with retries and progress, resume, abort;
 * export progress; download). API errors are thrown as `ApiError` (status, code, message,
 * requestId), unreachable servers as `NetworkError`, aborts as `AbortedError`.
 *
 * ```ts
 * const client = new FileJobsClient({ apiUrl: 'http://127.0.0.1:3000' });
 * await client.signIn('avijeet', 'avijeet@123');
 * const result = await client.uploadFile('big.bin', { concurrency: 8, onProgress: (p) => console.log(p.bytesDone) });
 * const job = await client.exportFile('big.bin', { format: 'gzip' });
 * await client.downloadToFile(job, 'big.bin.gz');
 * ```
 */
export class FileJobsClient implements UploadApi, ExportApi {
  token: string | undefined;
  readonly fetch: FetchLike;
  private readonly transport: Transport;
  private readonly renewsTokens: boolean;
  private readonly onTokenRenewed: ((renewed: SignInResult) => void) | undefined;
  /** The renewal in flight: calls that need it meanwhile wait for the same one. */
  private renewal: Promise<unknown> | undefined;
  /** A token whose renewal gave no longer life (its sign-in ends with it): not renewed again. */
  private lastOfSession: string | undefined;

  constructor(options: ClientOptions) {
    this.token = options.token;
    this.renewsTokens = options.renewToken ?? true;
    this.onTokenRenewed = options.onTokenRenewed;
    const fetchFn = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.fetch = fetchFn;
    this.transport = new Transport({
      apiUrl: options.apiUrl,
      token: () => this.currentToken(),
      fetch: fetchFn,
      retry: retryPolicy(options.retry),
      timeoutMs: options.requestTimeoutMs ?? 30_000,
      userAgent: options.userAgent,
    });
  }

  get apiUrl(): string {
    return this.transport.apiUrl;
  }

  /** A route that answers `{"job": …}`, as most job routes do: the job. */
  private async jobCall<T extends Job = Job>(method: string, path: string, options: CallOptions): Promise<T> {
    const { job } = await this.transport.call<{ job: T }>(method, path, options);
    return job;
  }

  // --- identity ---------------------------------------------------------------------------------

  /** `POST /auth/signin`; keeps the token for the calls that follow. */
  async signIn(username: string, password: string, options: Signal = {}): Promise<SignInResult> {
    const result = await this.transport.call<SignInResult>('POST', '/auth/signin', {
      body: { username, password },
      auth: false,
      // Never repeated on 429 (the account is locked for a while) or 401.
      retry: 'unsent',
      signal: options.signal,
    });
    this.token = result.token;
    return result;
  }

  /**
   * `POST /auth/renew`: a new token of the same sign-in for the current one, which must still be
   * valid; kept for the calls that follow. Calls renew by themselves (`renewToken` option).
   */
  async renewToken(options: Signal & { retry?: RetryMode } = {}): Promise<SignInResult> {
    const token = this.token;
    if (!token) throw new FileJobsError('NotSignedIn', 'not signed in: sign in first or pass a token');
    const renewed = await this.transport.call<SignInResult>('POST', '/auth/renew', {
      auth: false,
      headers: { authorization: `Bearer ${token}` },
      retry: options.retry ?? 'idempotent',
      signal: options.signal,
    });
    // Another sign-in (or renewal) may have replaced the token meanwhile: that one stays.
    if (this.token !== token) return renewed;
    const before = tokenLifetime(token)?.expiresAt ?? 0;
    if ((tokenLifetime(renewed.token)?.expiresAt ?? 0) <= before) this.lastOfSession = renewed.token;
    this.token = renewed.token;
    this.onTokenRenewed?.(renewed);
    return renewed;
  }

  /**
   * `POST /auth/signout`: ends this sign-in on the service (its tokens, renewed ones too, are refused
   * from now on; the user's other sign-ins go on), and forgets the token.
   */
  async signOut(options: Signal = {}): Promise<void> {
    await this.transport.call('POST', '/auth/signout', { retry: 'idempotent', signal: options.signal });
    this.token = undefined;
  }

  /**
   * The token to send now, renewed first once a third or less of its life is left (unless
   * `renewToken: false`): for requests an app makes itself, such as Uppy's to the Companion routes.
   */
  accessToken(): Promise<string | undefined> {
    return this.currentToken();
  }

  /** The token to send: renewed first once a third or less of its life is left. */
  private async currentToken(): Promise<string | undefined> {
    const token = this.token;
    if (!token || !this.renewsTokens || token === this.lastOfSession) return token;
    const life = tokenLifetime(token);
    // The token's times are the service's: a machine whose clock is off by more than a third of a
    // token's life would renew too late, or think the token expired and never renew it.
    const now = this.transport.serverNow() / 1000;
    // An expired token cannot be renewed: the call goes out with it and gets the service's 401.
    if (!life || now >= life.expiresAt || life.expiresAt - now > (life.expiresAt - life.issuedAt) / 3)
      return token;
    // Not retried: the call itself is, and the next call renews again (a third of the life is long).
    this.renewal ??= this.renewToken({ retry: 'never' }).finally(() => {
      this.renewal = undefined;
    });
    // A failed renewal leaves the token as it was, still valid for a while: the next call tries again.
    await this.renewal.catch(() => undefined);
    return this.token;
  }

  /** `GET /health`. */
  health(options: Signal = {}): Promise<Health> {
    return this.transport.call('GET', '/health', { auth: false, signal: options.signal });
  }

  // --- uploads ----------------------------------------------------------------------------------

  /**
   * `POST /upload` (JSON): opens a multipart upload; the first 100 part URLs come with it. Sent with
   * an Idempotency-Key (a fresh one unless given), so it is retried like any idempotent call: a
   * retry after a lost answer gets the job the first attempt made, not a second one.
   */
  createUpload(
    input: CreateUploadInput,
    options: { retry?: RetryMode; idempotencyKey?: string } = {},
  ): Promise<CreatedUpload> {
    return this.transport.call('POST', '/upload', {
      body: input,
      retry: options.retry ?? 'idempotent',
      headers: idempotencyHeader(options.idempotencyKey),
    });
  }

  /**
   * `POST /upload` as the seed's form: how an empty file is stored (a multipart upload has no part to
   * send for it). Stored at once; the job is COMPLETED.
   */
  async storeEmptyFile(
    filename: string,
    options: { contentType?: string | undefined; overwrite?: boolean | undefined } = {},
  ): Promise<Job> {
    const form = new FormData();
    form.set('file', new Blob([], options.contentType ? { type: options.contentType } : {}), filename);
    if (options.overwrite) form.set('overwrite', 'true');
    return this.jobCall('POST', '/upload', {
      body: form,
      retry: 'unsent',
    });
  }

  /** `POST /upload/{jobId}/parts` for an upload without a checksum algorithm, in requests of up to 1,000 parts. */
  async signParts(jobId: string, partNumbers: number[], options: Signal = {}): Promise<SignedPart[]> {
    const signed: SignedPart[] = [];
    for (let i = 0; i < partNumbers.length; i += MAX_PARTS_PER_REQUEST) {
      const { parts } = await this.transport.call<{ parts: SignedPart[] }>(
        'POST',
        `/upload/${enc(jobId)}/parts`,
        {
          body: { partNumbers: partNumbers.slice(i, i + MAX_PARTS_PER_REQUEST) },
          retry: 'idempotent',
          signal: options.signal,
        },
      );
      signed.push(...parts);
    }
    return signed;
  }

  /**
   * `POST /upload/{jobId}/parts` for an upload with a checksum algorithm: each URL signs its part's
   * checksum, and its `headers` (send them exactly) carry it. Requests of up to 1,000 parts.
   */
  async signChecksummedParts(
    jobId: string,
    parts: PartToSign[],
    options: Signal = {},
  ): Promise<SignedPart[]> {
    const signed: SignedPart[] = [];
    for (let i = 0; i < parts.length; i += MAX_PARTS_PER_REQUEST) {
      const answer = await this.transport.call<{ parts: SignedPart[] }>(
        'POST',
        `/upload/${enc(jobId)}/parts`,
        {
          body: { parts: parts.slice(i, i + MAX_PARTS_PER_REQUEST) },
          retry: 'idempotent',
          signal: options.signal,
        },
      );
      signed.push(...answer.parts);
    }
    return signed;
  }

  /** `POST /upload/{jobId}/progress`: records finished parts (idempotent on the server). */
  async reportProgress(
    jobId: string,
    parts: FinishedPart[],
    options: { retry?: RetryMode } = {},
  ): Promise<Job> {
    return this.jobCall('POST', `/upload/${enc(jobId)}/progress`, {
      body: { parts },
      retry: options.retry ?? 'idempotent',
    });
  }

  /**
   * `POST /upload/{jobId}/complete` (idempotent on the server). `checksum` is the whole file's CRC
   * (base64; CRC algorithms only): S3 checks the object against it, and a mismatch throws
   * ChecksumMismatchError with the job left UPLOADING.
   */
  async completeUpload(jobId: string, options: { checksum?: string | undefined } = {}): Promise<Job> {
    try {
      // Awaited here, so that a refused completion reaches the catch below.
      return await this.jobCall('POST', `/upload/${enc(jobId)}/complete`, {
        ...(options.checksum ? { body: { checksum: options.checksum } } : {}),
        retry: 'idempotent',
      });
    } catch (error) {
      if (error instanceof ApiError && error.code === ErrorCode.ChecksumMismatch) {
        throw completionMismatch(jobId, error, options.checksum, undefined);
      }
      throw error;
    }
  }

  /** `DELETE /upload/{jobId}`: aborts one upload, leaving no part behind (idempotent). */
  async abortUpload(jobId: string): Promise<Job> {
    return this.jobCall('DELETE', `/upload/${enc(jobId)}`, {
      retry: 'idempotent',
    });
  }

  /** `DELETE /upload/kill`: aborts every upload of the caller in flight; 404 NoUploadFound when none. */
  killUploads(): Promise<KilledUploads> {
    return this.transport.call('DELETE', '/upload/kill', { retry: 'idempotent' });
  }

  /**
   * `GET /jobs/{jobId}?reconcile=true`: which parts S3 holds (`uploadedParts`, and `parts` with their
   * sizes and checksums) and lacks (`missingParts`).
   */
  reconcileUpload(jobId: string, options: Signal = {}): Promise<ReconciledJob> {
    return this.transport.call('GET', `/jobs/${enc(jobId)}`, {
      query: { reconcile: 'true' },
      signal: options.signal,
    });
  }

  /** The newest UPLOADING job for `filename` (and `size`, when given), if any. */
  async findUnfinishedUpload(
    filename: string,
    size?: number,
    options: Signal = {},
  ): Promise<Job | undefined> {
    for await (const job of this.jobs({ type: 'upload', status: 'UPLOADING', limit: 100 }, options)) {
      if (job.filename === filename && (size === undefined || job.size === size)) return job;
    }
    return undefined;
  }

  /** Uploads bytes, a Blob, a stream of known size, or any random-access source. See UploadOptions. */
  upload(options: UploadOptions): Promise<UploadResult> {
    return runUpload(this, options);
  }

  /** Uploads a file from disk; its base name (fileSource's `name`) is the default `filename`. */
  async uploadFile(
    path: string,
    options: Omit<UploadOptions, 'source' | 'filename'> & { filename?: string } = {},
  ): Promise<UploadResult> {
    const source = await fileSource(path);
    try {
      return await runUpload(this, { ...options, source, filename: options.filename ?? source.name });
    } finally {
      await source.close().catch(() => {});
    }
  }

  // --- exports ----------------------------------------------------------------------------------

  /**
   * `POST /export`: starts an export (QUEUED); the worker runs on its own. Sent with an
   * Idempotency-Key (a fresh one unless given), so a retry never starts a second export.
   */
  async startExport(
    filename: string,
    format: ExportFormat = 'raw',
    options: { idempotencyKey?: string } = {},
  ): Promise<ExportJob> {
    return this.jobCall<ExportJob>('POST', '/export', {
      body: { filename, format },
      retry: 'idempotent',
      headers: idempotencyHeader(options.idempotencyKey),
    });
  }

  /** `DELETE /export/{jobId}`: cancels one export and removes its output. */
  async cancelExport(jobId: string): Promise<ExportJob> {
    return this.jobCall<ExportJob>('DELETE', `/export/${enc(jobId)}`, {
      retry: 'idempotent',
    });
  }

  /** `POST /export/kill`: cancels every running export of the caller; 404 NoExportFound when none. */
  killExports(): Promise<CancelledExports> {
    return this.transport.call('POST', '/export/kill', { retry: 'idempotent' });
  }

  /** Polls an export until it finishes; resolves with the SUCCEEDED job, throws JobFailedError otherwise. */
  waitForExport(jobId: string, options: WaitOptions = {}): Promise<ExportJob> {
    return waitForExport(this, jobId, options);
  }

  /** Starts an export and waits for it, with progress; aborting cancels it (unless keepOnAbort). */
  exportFile(filename: string, options: ExportOptions = {}): Promise<ExportJob> {
    return runExport(this, filename, options);
  }

  /** Downloads a SUCCEEDED export to a file (or into a directory), with progress, resuming dropped connections. */
  downloadToFile(
    jobOrId: string | ExportJob,
    path: string,
    options: DownloadOptions = {},
  ): Promise<DownloadResult> {
    return downloadToFile(this, jobOrId, path, options);
  }

  /** The download of a SUCCEEDED export as a fetch Response, to stream anywhere. */
  openDownload(
    jobOrId: string | ExportJob,
    options: Signal = {},
  ): Promise<{ job: ExportJob; response: Response }> {
    return openDownload(this, jobOrId, options.signal);
  }

  // --- jobs and files ---------------------------------------------------------------------------

  /** `GET /jobs`: one page, newest first. */
  listJobs(query: JobsQuery = {}, options: Signal = {}): Promise<JobsPage> {
    return this.transport.call('GET', '/jobs', { query: { ...query }, signal: options.signal });
  }

  /** Every job matching `query`, page after page. */
  async *jobs(query: JobsQuery = {}, options: Signal = {}): AsyncGenerator<Job> {
    let cursor = query.cursor;
    do {
      const page = await this.listJobs({ ...query, ...(cursor ? { cursor } : {}) }, options);
      yield* page.jobs;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** `GET /jobs/{jobId}`; a SUCCEEDED export carries a fresh `downloadUrl`. */
  async getJob(jobId: string, options: Signal = {}): Promise<Job> {
    return this.jobCall('GET', `/jobs/${enc(jobId)}`, {
      signal: options.signal,
    });
  }

  /** `GET /jobs/{jobId}` for an export. */
  async getExport(jobId: string, options: Signal = {}): Promise<ExportJob> {
    const job = await this.getJob(jobId, options);
    if (!isExportJob(job)) throw new FileJobsError('NotAnExport', `job ${jobId} is an upload, not an export`);
    return job;
  }

  /** `GET /files`: the caller's uploads folder. */
  async listFiles(options: Signal = {}): Promise<StoredFile[]> {
    const { files } = await this.transport.call<{ files: StoredFile[] }>('GET', '/files', {
      signal: options.signal,
    });
    return files;
  }
}

const enc = encodeURIComponent;
