/**
 * The service's wire shapes, as clients see them (see README.md, "Routes"). Kept here, apart from
 * lib/, so that the client depends on nothing server-side: another project imports only client/
 * (and common/, the pure code that client and service share). tests/unit/client-types.test.ts holds
 * each answer's type to the OpenAPI document.
 */
import type { Checksum, ChecksumAlgorithm } from '../common/checksums.ts';
import type { ExportFormat, JobStatus, JobType } from '../common/statuses.ts';

export type { Checksum, ChecksumAlgorithm, ChecksumType } from '../common/checksums.ts';
export type { ExportFormat, ExportStatus, JobStatus, JobType, UploadStatus } from '../common/statuses.ts';

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
  /** The upload's checksum algorithm, when it was created with one. */
  checksumAlgorithm?: ChecksumAlgorithm;
  /**
   * The checksum of the object the job wrote (a COMPLETED upload's file, a SUCCEEDED export's
   * output), as S3 reported it when the job finished: FULL_OBJECT for the CRCs, COMPOSITE for SHA256.
   */
  checksum?: Checksum;
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
   * The headers the PUT must carry, exactly, as the URL signs them: `content-length`, the part's
   * exact size, and for an upload with a checksum algorithm the part's checksum
   * (`x-amz-checksum-crc32`, …). S3 refuses a PUT whose headers differ from the signed ones (403) and
   * one whose body does not match the checksum (400 BadDigest).
   */
  headers: Record<string, string>;
}

/** A part to sign for an upload with a checksum algorithm: the checksum (base64) of its bytes. */
export interface PartToSign {
  partNumber: number;
  checksum: string;
}

export interface CreateUploadInput {
  filename: string;
  size: number;
  contentType?: string;
  /** Bytes; 5 MiB to 5 GiB. The service picks 8 MiB (or more for huge files) when omitted. */
  partSize?: number;
  overwrite?: boolean;
  /**
   * S3 checks every part against its checksum, and the whole file against the CRC sent at
   * completion. With one, `parts` of the answer is empty: a part's URL signs its checksum, which
   * only the bytes give.
   */
  checksumAlgorithm?: ChecksumAlgorithm;
}

/** `POST /upload` (JSON): the job, the plan, and presigned URLs for the first (up to 100) parts. */
export interface CreatedUpload {
  job: Job;
  uploadId: string;
  key: string;
  partSize: number;
  partCount: number;
  /** The algorithm S3 checks every part with, when the upload was created with one. */
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Empty for an upload with a checksum algorithm: each URL signs its part's checksum. */
  parts: SignedPart[];
}

/** A part S3 holds, usable for completion (its planned size), with its checksum when it has one. */
export interface StoredPart {
  partNumber: number;
  size: number;
  checksum?: string;
}

/** `GET /jobs/{jobId}?reconcile=true`: an UPLOADING job adds which parts S3 holds and which it lacks. */
export interface ReconciledJob {
  job: Job;
  uploadedParts?: number[];
  missingParts?: number[];
  parts?: StoredPart[];
}

/** A part S3 accepted: what `POST /upload/{jobId}/progress` records. */
export interface FinishedPart {
  partNumber: number;
  etag: string;
  size: number;
  /** The part's checksum (base64), for an upload with a checksum algorithm. */
  checksum?: string;
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
  /** The checksum S3 reported when the service stored this very object (absent if rewritten since). */
  checksum?: Checksum;
}

export interface SignInResult {
  token: string;
  tokenType: 'Bearer';
  /** Seconds. */
  expiresIn: number;
  /** When the sign-in ends (ISO 8601): renewals give tokens of it until then, never after. */
  sessionExpiresAt: string;
}

/** `DELETE /upload/kill`: the uploads it aborted. */
export interface KilledUploads {
  aborted: { jobId: string; filename: string }[];
}

/** `POST /export/kill`: the exports it cancelled, each CANCELLING or already CANCELLED. */
export interface CancelledExports {
  cancelled: { jobId: string; filename: string; status: JobStatus }[];
}

/** `GET /health`. */
export interface Health {
  status: 'ok';
  stage: string;
}

/** The service's error body: `{"error": {code, message, requestId, details?}}`. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}
