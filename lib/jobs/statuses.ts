/** Every job status, the one list the types, the request schemas and the OpenAPI document share. */
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

export type UploadStatus = (typeof UPLOAD_STATUSES)[number];
export type ExportStatus = (typeof EXPORT_STATUSES)[number];
export type JobStatus = UploadStatus | ExportStatus;
