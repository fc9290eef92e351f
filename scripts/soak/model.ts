/** What the soak remembers about every operation, to hold the service to it afterwards. */

export const OP_KINDS = [
  'upload',
  'upload-kill',
  'upload-abort',
  'upload-signal',
  'upload-crash',
  'complete-race',
  'form-upload',
  'upload-burst',
  'uppy-upload',
  'export',
  'export-cancel',
  'export-kill',
  'export-burst',
  'session',
] as const;
export type OpKind = (typeof OP_KINDS)[number];

export interface UploadRecord {
  kind: 'upload';
  op: string;
  username: string;
  filename: string;
  key: string;
  size: number;
  sha256: string;
  jobId?: string;
  /** The service told this client the upload is COMPLETED. */
  completedAck: boolean;
  /** A kill or abort answered that it aborted this job. */
  killAck: boolean;
  /**
   * Uppy's create, retried with its idempotency key, met 409 UploadInProgress: the name was held by
   * the upload an earlier try had opened, which the key should have found (the op's name is its own).
   */
  keyRefused?: boolean;
  /** What happened, in order, for the violation report. */
  steps: string[];
}

export interface ExportRecord {
  kind: 'export';
  op: string;
  username: string;
  filename: string;
  format: 'raw' | 'gzip';
  sourceSha256: string;
  sourceSize: number;
  jobId?: string;
  /** A cancel or kill answered CANCELLING / CANCELLED for this job. */
  cancelAck: boolean;
  steps: string[];
}

/** A second sign-in of a user, renewed, used and signed out while the user's lanes go on. */
export interface SessionRecord {
  kind: 'session';
  op: string;
  username: string;
  /** Every token of this sign-in: the first, then each renewal's. */
  tokens: string[];
  /** The service answered the sign-out (204). */
  signedOut: boolean;
  /** Tokens of this sign-in still accepted once every container must have learned of the sign-out. */
  acceptedAfterSignOut: { token: number; status: number }[];
  steps: string[];
}

export interface Violation {
  /** Short machine-friendly name: stuck-job, upload-bytes, parts-left, http-5xx, … */
  rule: string;
  username?: string;
  jobId?: string;
  /** The job's status in DynamoDB when checked. */
  status?: string;
  detail: string;
  steps?: string[];
}

export interface StoredFile {
  filename: string;
  size: number;
  sha256: string;
}
