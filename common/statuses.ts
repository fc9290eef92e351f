/**
 * The kinds of job and every status each can be in: the one list the server's types, request
 * schemas and OpenAPI document, the client's types and the CLI's choices share.
 */
export const JOB_TYPES = ['upload', 'export'] as const;
export const EXPORT_FORMATS = ['raw', 'gzip'] as const;

export const UPLOAD_STATUSES = [
  'UPLOADING',
  'COMPLETING',
  'COMPLETED',
  'ABORTED',
  'FAILED',
  'EXPIRED',
] as const;
export const EXPORT_STATUSES = [
  'QUEUED',
  'RUNNING',
  'SUCCEEDED',
  'CANCELLING',
  'CANCELLED',
  'FAILED',
  'EXPIRED',
] as const;
export const JOB_STATUSES = [...new Set([...UPLOAD_STATUSES, ...EXPORT_STATUSES])] as JobStatus[];

/** The statuses a job never leaves: its file name and its share of the user's limits are free again. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  'COMPLETED',
  'ABORTED',
  'FAILED',
  'EXPIRED',
  'SUCCEEDED',
  'CANCELLED',
]);

export type JobType = (typeof JOB_TYPES)[number];
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export type UploadStatus = (typeof UPLOAD_STATUSES)[number];
export type ExportStatus = (typeof EXPORT_STATUSES)[number];
export type JobStatus = UploadStatus | ExportStatus;
