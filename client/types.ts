/**
 * The service's wire shapes, as clients see them (see README.md, "Routes"). Kept here, apart from
 * lib/, so that the client depends on nothing server-side: another project imports only client/.
 */

export type JobType = 'upload' | 'export';
export type UploadStatus = 'UPLOADING' | 'COMPLETING' | 'COMPLETED' | 'ABORTED' | 'FAILED' | 'EXPIRED';
export type ExportStatus =
  | 'QUEUED'
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'CANCELLING'
  | 'CANCELLED'
  | 'FAILED'
  | 'EXPIRED';
export type JobStatus = UploadStatus | ExportStatus;
export type ExportFormat = 'raw' | 'gzip';

export interface JobProgress {
  partsDone: number;
  partCount: number;
  bytesDone: number;
  bytesTotal: number;
}

/** A job as `GET /jobs/{jobId}` answers it. */
export interface Job {
  jobId: string;
  type: JobType;
  status: JobStatus;
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  contentType?: string;
  progress: JobProgress;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  error?: string;
}

/** An export job; a SUCCEEDED one carries a freshly signed `downloadUrl` until `expiresAt`. */
export interface ExportJob extends Job {
  type: 'export';
  format: ExportFormat;
  outputSize?: number;
  downloadUrl?: string;
  expiresAt?: string;
}

export interface SignedPart {
  partNumber: number;
  url: string;
  expiresAt: string;
  /**
   * The headers the PUT must carry, as the URL signs them: `content-length`, the part's exact size
   * (S3 refuses any other length with 403). `putPart` sends the length of the bytes it is given.
   */
  headers?: Record<string, string>;
}

export interface CreateUploadInput {
  filename: string;
  size: number;
  contentType?: string;
  /** Bytes; 5 MiB to 5 GiB. The service picks 8 MiB (or more for huge files) when omitted. */
  partSize?: number;
  overwrite?: boolean;
}

/** `POST /upload` (JSON): the job, the plan, and presigned URLs for the first (up to 100) parts. */
export interface CreatedUpload {
  job: Job;
  uploadId: string;
  key: string;
  partSize: number;
  partCount: number;
  parts: SignedPart[];
}

/** `GET /jobs/{jobId}?reconcile=true`: an UPLOADING job adds which parts S3 holds and which it lacks. */
export interface ReconciledJob {
  job: Job;
  uploadedParts?: number[];
  missingParts?: number[];
}

/** A part S3 accepted: what `POST /upload/{jobId}/progress` records. */
export interface FinishedPart {
  partNumber: number;
  etag: string;
  size: number;
}

export interface JobsQuery {
  type?: JobType;
  status?: JobStatus;
  /** 1 to 100; the service's default is 20. */
  limit?: number;
  cursor?: string;
}

export interface JobsPage {
  jobs: Job[];
  nextCursor?: string;
}

export interface StoredFile {
  name: string;
  size: number;
  lastModified: string;
}

export interface SignInResult {
  token: string;
  tokenType: 'Bearer';
  /** Seconds. */
  expiresIn: number;
}

/** The service's error body: `{"error": {code, message, requestId, details?}}`. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}
