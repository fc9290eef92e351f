import {
  type CancellationReason,
  ConditionalCheckFailedException,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { Checksum, ChecksumAlgorithm } from '../../common/checksums.ts';
import {
  EXPORT_STATUSES,
  type ExportStatus,
  type JobStatus,
  type JobType,
  TERMINAL_STATUSES,
  UPLOAD_STATUSES,
  type UploadStatus,
} from '../../common/statuses.ts';

/**
 * The jobs table (single-table design):
 *
 * | item        | pk                | sk                         | what                                   |
 * |-------------|-------------------|----------------------------|----------------------------------------|
 * | job         | USER#<username>   | JOB#<jobId>                | status, plan, progress counters        |
 * | active slot | USER#<username>   | ACTIVE#<type>#<name>       | exists only while a job runs: one      |
 * |             |                   |                            | active upload per file, and kill reads |
 * |             |                   |                            | these (O(active jobs), consistent)     |
 * | part        | JOB#<jobId>       | PART#<00001>               | one per recorded part (10,000 scale)   |
 * | counter     | USER#<username>   | RUNNING#<type>             | unfinished jobs of a type (`running`)  |
 * |             |                   |                            | and their declared bytes (`bytes`),    |
 * |             |                   |                            | for the per-user limits                |
 * | rate        | USER#<username>   | CREATED#<epoch minute>     | jobs created in that minute (`created`,|
 * |             |                   |                            | TTL), for the per-minute limit         |
 * | file        | USER#<username>   | FILE#<name>                | the last upload the service completed  |
 * |             |                   |                            | under that name: its ETag and checksum |
 * |             |                   |                            | (written with COMPLETED; no TTL)       |
 *
 * Every status change is a conditional write on the current status; a terminal change also frees
 * the active slot and gives back what the job counted (`holds`) in the same transaction. The
 * counters and the rate item move only inside the create transaction (checked against the limits
 * there) and the terminal one, so they always equal the user's unfinished jobs.
 *
 * Indexes:
 * - ActiveJobsByOwner (`activeOwner` = `<type>#<username>`, sparse, all attributes): unfinished jobs,
 *   for the janitor;
 * - JobsByOwnerType (`ownerType` = `<type>#<username>`) and JobsByOwnerStatus (`ownerStatus` =
 *   `<type>#<username>#<status>`, rewritten with every status change), keys only: GET /jobs filtered
 *   by type or status reads one page of an index, then that page from the table, never the user's
 *   whole history.
 *
 * Three adapters share the table, one per concern: JobStore (a job's life: create, read, list,
 * status changes), PartRecords (an upload's recorded parts) and WorkerLeases (who runs an export).
 * This module holds what they share: the items' shapes and keys, and how a lost condition or a
 * transaction conflict is handled.
 */

export type { ExportStatus, JobStatus, JobType, UploadStatus };

export { TERMINAL_STATUSES };

export interface JobRecord {
  jobId: string;
  username: string;
  type: JobType;
  status: JobStatus;
  filename: string;
  /** The S3 key the job writes. */
  key: string;
  size: number;
  partSize: number;
  partCount: number;
  contentType?: string;
  uploadId?: string;
  partsDone: number;
  bytesDone: number;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  error?: string;
  /** Type-specific fields (an export's format, source, output…). */
  details?: Record<string, unknown>;
  /** The algorithm an upload's parts are checked with (S3 refuses a part whose body does not match). */
  checksumAlgorithm?: ChecksumAlgorithm;
  /** The checksum of the object the job wrote, as S3 reports it: set when the job finishes. */
  checksum?: Checksum;
  /** Worker bookkeeping (exports): who may run the job, until when, and where it left off. */
  workerToken?: string;
  /** The Lambda invocation that last claimed the job (how a report of its death is matched to it). */
  workerRequestId?: string;
  leaseUntil?: number;
  invocations?: number;
  checkpoint?: { offset: number; partNumber: number };
  /** How many times the job's worker was restarted after it stopped (by the janitor, or by itself). */
  restarts?: number;
  /**
   * Restarts since the worker last finished a part: the janitor gives up on a worker that keeps
   * stopping without progress (JANITOR_MAX_EXPORT_RESTARTS), not on a long export that met a few
   * faults over its days.
   */
  restartsSinceProgress?: number;
  /** Epoch seconds after which a finished job is gone (DynamoDB TTL, honoured by the reads too). */
  expiresAt?: number;
  /**
   * What the job added to its type's counter (RUNNING#<type>) when it was created, given back by the
   * terminal transition: one running job and its declared bytes (zeros when created without limits).
   */
  holds?: JobHolds;
}

export interface JobHolds {
  running: number;
  bytes: number;
}

export interface PartRecord {
  partNumber: number;
  etag: string;
  size: number;
  /** The part's checksum (base64), for an upload with a checksum algorithm. */
  checksum?: string;
}

export interface ActiveSlot {
  jobId: string;
  type: JobType;
  name: string;
}

export const userPk = (username: string) => `USER#${username}`;
export const jobSk = (jobId: string) => `JOB#${jobId}`;
export const slotSk = (type: JobType, name: string) => `ACTIVE#${type}#${name}`;
export const partPk = (jobId: string) => `JOB#${jobId}`;
export const partSk = (partNumber: number) => `PART#${String(partNumber).padStart(5, '0')}`;
export const counterSk = (type: JobType) => `RUNNING#${type}`;
export const createdSk = (epochMinute: number) => `CREATED#${epochMinute}`;
export const idempotencySk = (key: string) => `IDEMPOTENCY#${key}`;
export const FILE_SK_PREFIX = 'FILE#';
export const fileSk = (name: string) => `${FILE_SK_PREFIX}${name}`;
export const ownerType = (username: string, type: JobType) => `${type}#${username}`;
export const ownerStatus = (username: string, type: JobType, status: JobStatus) =>
  `${type}#${username}#${status}`;

/** The job types a status can belong to (FAILED and EXPIRED belong to both). */
export const typesWithStatus = (status: JobStatus): JobType[] => [
  ...((UPLOAD_STATUSES as readonly JobStatus[]).includes(status) ? (['upload'] as const) : []),
  ...((EXPORT_STATUSES as readonly JobStatus[]).includes(status) ? (['export'] as const) : []),
];

/** A conditional status change lost: the job is not (or no longer) in a status it could leave. */
export class TransitionRejected extends Error {
  override name = 'TransitionRejected';
  readonly current: JobRecord | undefined;
  constructor(message: string, current: JobRecord | undefined) {
    super(message);
    this.current = current;
  }
}

/** The per-user limits on new jobs (configured in lib/config.ts, answered in lib/jobs/limits.ts). */
export type LimitName = 'uploadsInFlight' | 'uploadBytesInFlight' | 'exportsRunning' | 'jobsPerMinute';

/** A new job would take the user past one of their limits; nothing was written. */
export class LimitReached extends Error {
  override name = 'LimitReached';
  readonly limit: LimitName;
  readonly max: number;
  /** When a retry may fit: the next minute for the rate, a guess for the others. */
  readonly retryAfterSeconds: number;
  constructor(limit: LimitName, max: number, retryAfterSeconds: number) {
    super(`the ${limit} limit of ${max} is reached`);
    this.limit = limit;
    this.max = max;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Another job holds the active slot for this (type, name). */
export class SlotTaken extends Error {
  override name = 'SlotTaken';
  readonly holder: ActiveSlot;
  constructor(holder: ActiveSlot) {
    super(`${holder.type} ${holder.jobId} is active for ${holder.name}`);
    this.holder = holder;
  }
}

/**
 * A job's creation under a client's Idempotency-Key: which job the key made, and a fingerprint of
 * the request that made it (so that the key sent with another request is told apart).
 */
export interface IdempotencyRecord {
  key: string;
  fingerprint: string;
  /**
   * The ended job the key made before, from which this creation takes the key over (only where a
   * key names an upload in flight rather than one request: lib/companion/companion.ts). The take-over
   * is conditional on the key still naming that job, so two repeats racing for it make one new job.
   */
  supersedes?: string;
}

/** The Idempotency-Key was used before, within its lifetime: `jobId` is the job it made. */
export class IdempotencyKeyUsed extends Error {
  override name = 'IdempotencyKeyUsed';
  readonly jobId: string;
  readonly fingerprint: string;
  constructor(earlier: { jobId: string; fingerprint: string }) {
    super(`the idempotency key made job ${earlier.jobId}`);
    this.jobId = earlier.jobId;
    this.fingerprint = earlier.fingerprint;
  }
}

const JOB_FIELDS = [
  'jobId',
  'username',
  'type',
  'status',
  'filename',
  'key',
  'size',
  'partSize',
  'partCount',
  'contentType',
  'uploadId',
  'partsDone',
  'bytesDone',
  'createdAt',
  'updatedAt',
  'finishedAt',
  'error',
  'details',
  'checksumAlgorithm',
  'checksum',
  'workerToken',
  'workerRequestId',
  'leaseUntil',
  'invocations',
  'checkpoint',
  'restarts',
  'restartsSinceProgress',
  'expiresAt',
  'holds',
] as const;

/**
 * What the adapters over the jobs table share: the client, the table's name, and how long an ended
 * job is kept (its items carry a TTL from it).
 */
export abstract class JobsTableAdapter {
  protected readonly db: DynamoDBDocumentClient;
  protected readonly table: string;
  protected readonly retentionSeconds: number;

  constructor(db: DynamoDBDocumentClient, table: string, retentionSeconds: number) {
    this.db = db;
    this.table = table;
    this.retentionSeconds = retentionSeconds;
  }
}

/**
 * Whether a job's retention has run out. DynamoDB's TTL deletes expired items lazily (within days on
 * AWS, never on DynamoDB Local), so every read treats an expired job as gone itself.
 */
export const hasExpired = (job: Pick<JobRecord, 'expiresAt'>, nowMs = Date.now()) =>
  job.expiresAt !== undefined && job.expiresAt * 1000 <= nowMs;

export function toJob(item: Record<string, unknown>): JobRecord {
  const job: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) if (item[field] !== undefined) job[field] = item[field];
  return job as unknown as JobRecord;
}

export const reasonsOf = (error: unknown): CancellationReason[] =>
  error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];

export const itemOf = (reason: CancellationReason | undefined) =>
  reason?.Item ? unmarshall(reason.Item as Parameters<typeof unmarshall>[0]) : undefined;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * DynamoDB cancels a transaction that meets another one on any of its items (TransactionConflict),
 * and refuses a single write to an item a transaction holds (TransactionConflictException); both
 * leave nothing written and ask to be retried. A failed condition decides the outcome: no retry.
 */
const lostConflict = (error: unknown) => {
  if ((error as Error | undefined)?.name === 'TransactionConflictException') return true;
  const reasons = reasonsOf(error);
  return (
    reasons.some((reason) => reason.Code === 'TransactionConflict') &&
    !reasons.some((reason) => reason.Code === 'ConditionalCheckFailed')
  );
};

const CONFLICT_TRIES = 10;
const CONFLICT_BASE_MS = 25;
const CONFLICT_MAX_WAIT_MS = 1000;

/**
 * Every write to the jobs table goes through here (single writes too: DynamoDB refuses one to an
 * item a transaction holds). Full jitter, so that writers that collided do
 * not collide again in step; each wait and the number of tries are capped (under 6 s in all), so a
 * request stays well inside the API's 29 s even on a hot item such as a user's RUNNING counter.
 */
export async function withConflictRetry<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!lostConflict(error) || tries >= CONFLICT_TRIES) throw error;
      await sleep(Math.random() * Math.min(CONFLICT_MAX_WAIT_MS, CONFLICT_BASE_MS * 2 ** tries));
    }
  }
}

/**
 * The TransitionRejected for a conditional write on a job that lost, carrying the job as it was; or
 * undefined when `error` is not such a loss. A single write reports it as ConditionalCheckFailed-
 * Exception, a transaction as the first item's cancellation reason (by convention the job is the
 * first item); both carry the item when the write asked for ReturnValuesOnConditionCheckFailure.
 */
export function rejectionOf(
  error: unknown,
  describe: (current: JobRecord | undefined) => string,
): TransitionRejected | undefined {
  let item: Record<string, unknown> | undefined;
  if (error instanceof ConditionalCheckFailedException) {
    item = error.Item ? unmarshall(error.Item as Parameters<typeof unmarshall>[0]) : undefined;
  } else {
    const [first] = reasonsOf(error);
    if (first?.Code !== 'ConditionalCheckFailed') return undefined;
    item = itemOf(first);
  }
  const current = item ? toJob(item) : undefined;
  return new TransitionRejected(describe(current), current);
}
