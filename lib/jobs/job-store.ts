import {
  type CancellationReason,
  ConditionalCheckFailedException,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  paginateQuery,
  paginateScan,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  EXPORT_STATUSES,
  type ExportStatus,
  type JobStatus,
  UPLOAD_STATUSES,
  type UploadStatus,
} from './statuses.ts';

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
 * | counter     | USER#<username>   | RUNNING#<type>             | running jobs of a type, for a per-user |
 * |             |                   |                            | limit enforced in the create transaction |
 *
 * Every status change is a conditional write on the current status; a terminal change also frees
 * the active slot in the same transaction.
 *
 * Indexes (keys only; a page of keys is then read from the table, consistently):
 * - ActiveJobsByOwner (`activeOwner` = `<type>#<username>`, sparse): unfinished jobs, for the janitor;
 * - JobsByOwnerType (`ownerType` = `<type>#<username>`) and JobsByOwnerStatus (`ownerStatus` =
 *   `<type>#<username>#<status>`, rewritten with every status change): GET /jobs filtered by type or
 *   status reads one page of an index, never the user's whole history.
 */

export type JobType = 'upload' | 'export';

export type { ExportStatus, JobStatus, UploadStatus };

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  'COMPLETED',
  'ABORTED',
  'FAILED',
  'EXPIRED',
  'SUCCEEDED',
  'CANCELLED',
]);

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
  /** Worker bookkeeping (exports): who may run the job, until when, and where it left off. */
  workerToken?: string;
  leaseUntil?: number;
  invocations?: number;
  checkpoint?: { offset: number; partNumber: number };
  /** How many times the janitor restarted the job's worker. */
  restarts?: number;
  /** Epoch seconds after which a finished job is gone (DynamoDB TTL, honoured by the reads too). */
  expiresAt?: number;
}

export interface PartRecord {
  partNumber: number;
  etag: string;
  size: number;
}

export interface ActiveSlot {
  jobId: string;
  type: JobType;
  name: string;
}

const userPk = (username: string) => `USER#${username}`;
const jobSk = (jobId: string) => `JOB#${jobId}`;
const slotSk = (type: JobType, name: string) => `ACTIVE#${type}#${name}`;
const partPk = (jobId: string) => `JOB#${jobId}`;
const partSk = (partNumber: number) => `PART#${String(partNumber).padStart(5, '0')}`;
const counterSk = (type: JobType) => `RUNNING#${type}`;
const ownerType = (username: string, type: JobType) => `${type}#${username}`;
const ownerStatus = (username: string, type: JobType, status: JobStatus) => `${type}#${username}#${status}`;

/** The job types a status can belong to (FAILED and EXPIRED belong to both). */
const typesWithStatus = (status: JobStatus): JobType[] => [
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

/** The user already runs as many jobs of this type as allowed. */
export class LimitReached extends Error {
  override name = 'LimitReached';
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
  'workerToken',
  'leaseUntil',
  'invocations',
  'checkpoint',
  'restarts',
  'expiresAt',
] as const;

/**
 * Whether a job's retention has run out. DynamoDB's TTL deletes expired items lazily (within days on
 * AWS, never on DynamoDB Local), so every read treats an expired job as gone itself.
 */
export const hasExpired = (job: Pick<JobRecord, 'expiresAt'>, nowMs = Date.now()) =>
  job.expiresAt !== undefined && job.expiresAt * 1000 <= nowMs;

function toJob(item: Record<string, unknown>): JobRecord {
  const job: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) if (item[field] !== undefined) job[field] = item[field];
  return job as unknown as JobRecord;
}

const reasonsOf = (error: unknown): CancellationReason[] =>
  error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];

const itemOf = (reason: CancellationReason | undefined) =>
  reason?.Item ? unmarshall(reason.Item as Parameters<typeof unmarshall>[0]) : undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
 * Every transaction of this store goes through here. Full jitter, so that writers that collided do
 * not collide again in step; each wait and the number of tries are capped (under 6 s in all), so a
 * request stays well inside the API's 29 s even on a hot item such as a user's RUNNING counter.
 */
async function withConflictRetry<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!lostConflict(error) || tries >= CONFLICT_TRIES) throw error;
      await sleep(Math.random() * Math.min(CONFLICT_MAX_WAIT_MS, CONFLICT_BASE_MS * 2 ** tries));
    }
  }
}

export interface TransitionOptions {
  from: readonly JobStatus[];
  to: JobStatus;
  /** Attributes to set along with the status. */
  set?: Partial<Pick<JobRecord, 'partsDone' | 'bytesDone' | 'error' | 'uploadId' | 'details'>>;
  /** Also release one unit of the user's running-jobs counter (jobs created with a limit). */
  releaseCounter?: boolean;
  /** Leaving for a terminal status: frees the active slot and starts the retention clock (TTL). */
  slot?: ActiveSlot;
  /** Only if the job's `updatedAt` is still this: nothing happened to it since it was read. */
  ifUpdatedAt?: string;
  /** Only while the job is held by this worker token (fencing: a worker whose lease ran out loses). */
  token?: string;
}

export class JobStore {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;
  private readonly retentionSeconds: number;

  constructor(db: DynamoDBDocumentClient, table: string, retentionSeconds: number) {
    this.db = db;
    this.table = table;
    this.retentionSeconds = retentionSeconds;
  }

  /**
   * Writes a new job and claims its active slot in one transaction. Throws SlotTaken (naming the
   * holder) when another job of the same type is active for the same name.
   */
  async create(job: JobRecord, slotName: string, limit?: number): Promise<void> {
    // With a limit, the user's running counter goes up in the same transaction, only below the limit.
    const counter =
      limit === undefined
        ? []
        : [
            {
              Update: {
                TableName: this.table,
                Key: { pk: userPk(job.username), sk: counterSk(job.type) },
                UpdateExpression: 'ADD running :one',
                ConditionExpression: 'attribute_not_exists(running) OR running < :limit',
                ExpressionAttributeValues: { ':one': 1, ':limit': limit },
              },
            },
          ];
    try {
      await withConflictRetry(() =>
        this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.table,
                  Item: {
                    pk: userPk(job.username),
                    sk: jobSk(job.jobId),
                    activeOwner: `${job.type}#${job.username}`,
                    ownerType: ownerType(job.username, job.type),
                    ownerStatus: ownerStatus(job.username, job.type, job.status),
                    ...job,
                  },
                  ConditionExpression: 'attribute_not_exists(pk)',
                },
              },
              {
                Put: {
                  TableName: this.table,
                  Item: {
                    pk: userPk(job.username),
                    sk: slotSk(job.type, slotName),
                    jobId: job.jobId,
                    type: job.type,
                    name: slotName,
                    createdAt: job.createdAt,
                  },
                  ConditionExpression: 'attribute_not_exists(pk)',
                  ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
                },
              },
              ...counter,
            ],
          }),
        ),
      );
    } catch (error) {
      const reasons = reasonsOf(error);
      const holder = itemOf(reasons[1]);
      if (holder) throw new SlotTaken({ jobId: holder.jobId, type: holder.type, name: holder.name });
      if (reasons[2]?.Code === 'ConditionalCheckFailed')
        throw new LimitReached(`${job.type} limit of ${limit} reached`);
      throw error;
    }
  }

  /** One job; an expired one reads as gone unless `includeExpired` (the janitor's cleanup needs it). */
  async get(
    username: string,
    jobId: string,
    options: { includeExpired?: boolean } = {},
  ): Promise<JobRecord | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: { pk: userPk(username), sk: jobSk(jobId) },
        ConsistentRead: true,
      }),
    );
    const job = Item ? toJob(Item) : undefined;
    return job && (options.includeExpired || !hasExpired(job)) ? job : undefined;
  }

  /** Conditional status change; throws TransitionRejected (with the job as it is) when it loses. */
  async transition(username: string, jobId: string, options: TransitionOptions): Promise<JobRecord> {
    const now = new Date();
    const names: Record<string, string> = { '#status': 'status' };
    const values: Record<string, unknown> = { ':to': options.to, ':now': now.toISOString() };
    // Terminal changes name their type through the slot they free; the others' status implies it.
    const [impliedType, ...otherType] = typesWithStatus(options.to);
    const type = options.slot?.type ?? (otherType.length === 0 ? impliedType : undefined);
    if (!type) throw new Error(`a change to ${options.to} must name the job's slot`);
    values[':ownerStatus'] = ownerStatus(username, type, options.to);
    const sets = ['#status = :to', 'updatedAt = :now', 'ownerStatus = :ownerStatus'];
    const removes: string[] = [];
    for (const [field, value] of Object.entries(options.set ?? {})) {
      names[`#${field}`] = field;
      values[`:${field}`] = value;
      sets.push(`#${field} = :${field}`);
    }
    const fromList = options.from.map((status, index) => {
      values[`:from${index}`] = status;
      return `:from${index}`;
    });
    if (TERMINAL_STATUSES.has(options.to)) {
      sets.push('finishedAt = :now', 'expiresAt = :expires');
      values[':expires'] = Math.floor(now.getTime() / 1000) + this.retentionSeconds;
      removes.push('activeOwner');
    }
    let unchanged = '';
    if (options.ifUpdatedAt !== undefined) {
      values[':seenUpdatedAt'] = options.ifUpdatedAt;
      unchanged = ' AND updatedAt = :seenUpdatedAt';
    }
    let fenced = '';
    if (options.token !== undefined) {
      values[':token'] = options.token;
      fenced = ' AND workerToken = :token';
    }
    const update = {
      TableName: this.table,
      Key: { pk: userPk(username), sk: jobSk(jobId) },
      UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
      ConditionExpression: `#status IN (${fromList.join(', ')})${unchanged}${fenced}`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    };
    const rejected = (current: Record<string, unknown> | undefined) =>
      new TransitionRejected(
        current ? `job ${jobId} is ${current.status}, not ${options.from.join(' or ')}` : `no job ${jobId}`,
        current ? toJob(current) : undefined,
      );

    if (!options.slot || !TERMINAL_STATUSES.has(options.to)) {
      try {
        const { Attributes } = await this.db.send(
          new UpdateCommand({
            ...update,
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return toJob(Attributes!);
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) {
          throw rejected(error.Item ? unmarshall(error.Item as Parameters<typeof unmarshall>[0]) : undefined);
        }
        throw error;
      }
    }

    const slot = options.slot;
    const release = options.releaseCounter
      ? [
          {
            Update: {
              TableName: this.table,
              Key: { pk: userPk(username), sk: counterSk(slot.type) },
              UpdateExpression: 'ADD running :minusOne',
              ExpressionAttributeValues: { ':minusOne': -1 },
            },
          },
        ]
      : [];
    try {
      await withConflictRetry(() =>
        this.db.send(
          new TransactWriteCommand({
            TransactItems: [
              { Update: { ...update, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } },
              {
                // Free the slot only if this job holds it (a later job may already have it).
                Delete: {
                  TableName: this.table,
                  Key: { pk: userPk(username), sk: slotSk(slot.type, slot.name) },
                  ConditionExpression: 'attribute_not_exists(pk) OR jobId = :jobId',
                  ExpressionAttributeValues: { ':jobId': jobId },
                },
              },
              ...release,
            ],
          }),
        ),
      );
    } catch (error) {
      const reasons = reasonsOf(error);
      if (reasons[0]?.Code === 'ConditionalCheckFailed') throw rejected(itemOf(reasons[0]));
      throw error;
    }
    return (await this.get(username, jobId))!;
  }

  /** The caller's active slots of one type: a consistent read of O(active jobs) items. */
  async activeSlots(username: string, type: JobType): Promise<ActiveSlot[]> {
    const slots: ActiveSlot[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': userPk(username), ':prefix': `ACTIVE#${type}#` },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? [])
        slots.push({ jobId: item.jobId, type: item.type, name: item.name });
    }
    return slots;
  }

  /**
   * One page of the caller's jobs, newest first, optionally filtered: one query of the table or of an
   * index (two for FAILED or EXPIRED without a type, merged), then the page read consistently. A page
   * may come back shorter than `limit` (jobs that expired or changed status since the index was
   * written); `lastJobId` is set whenever more may follow.
   */
  async list(
    username: string,
    options: { type?: JobType; status?: JobStatus; limit: number; startAfter?: string },
  ): Promise<{ jobs: JobRecord[]; lastJobId?: string }> {
    const before = options.startAfter ? jobSk(options.startAfter) : undefined;
    const partitions: { index?: string; key: string; value: string }[] = options.status
      ? (options.type ? [options.type] : typesWithStatus(options.status)).map((type) => ({
          index: 'JobsByOwnerStatus',
          key: 'ownerStatus',
          value: ownerStatus(username, type, options.status!),
        }))
      : options.type
        ? [{ index: 'JobsByOwnerType', key: 'ownerType', value: ownerType(username, options.type) }]
        : [{ key: 'pk', value: userPk(username) }];

    const pages = await Promise.all(
      partitions.map(async ({ index, key, value }) => {
        const page = await this.db.send(
          new QueryCommand({
            TableName: this.table,
            IndexName: index,
            KeyConditionExpression: `#key = :value AND ${before ? 'sk < :before' : 'begins_with(sk, :prefix)'}`,
            ExpressionAttributeNames: { '#key': key },
            ExpressionAttributeValues: {
              ':value': value,
              ...(before ? { ':before': before } : { ':prefix': 'JOB#' }),
            },
            ProjectionExpression: 'sk',
            ScanIndexForward: false,
            Limit: options.limit,
          }),
        );
        // Keys below JOB# (ACTIVE#…) share the user's partition; `sk < :before` can reach them.
        const keys = (page.Items ?? []).map((item) => String(item.sk)).filter((sk) => sk.startsWith('JOB#'));
        return { keys, more: page.LastEvaluatedKey !== undefined && keys.length > 0 };
      }),
    );
    const merged = pages
      .flatMap((page) => page.keys)
      .sort()
      .reverse();
    const pageKeys = merged.slice(0, options.limit);
    const more = merged.length > options.limit || pages.some((page) => page.more);
    const jobs = (await this.getMany(username, pageKeys)).filter(
      (job) =>
        !hasExpired(job) &&
        (!options.type || job.type === options.type) &&
        (!options.status || job.status === options.status),
    );
    const last = more && pageKeys.length > 0 ? pageKeys.at(-1)!.slice('JOB#'.length) : undefined;
    return { jobs, ...(last ? { lastJobId: last } : {}) };
  }

  /** Jobs by their sort keys (at most 100), in the order given; missing ones are left out. */
  private async getMany(username: string, sortKeys: string[]): Promise<JobRecord[]> {
    if (sortKeys.length === 0) return [];
    const found = new Map<string, JobRecord>();
    let keys: Record<string, unknown>[] = sortKeys.map((sk) => ({ pk: userPk(username), sk }));
    for (let attempt = 0; keys.length > 0; attempt++) {
      if (attempt > 0) await sleep(Math.random() * 20 * 2 ** Math.min(attempt, 6));
      const result = await this.db.send(
        new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }),
      );
      for (const item of result.Responses?.[this.table] ?? []) found.set(String(item.sk), toJob(item));
      // DynamoDB may return some keys unprocessed under load; they are asked for again.
      keys = (result.UnprocessedKeys?.[this.table]?.Keys ?? []) as Record<string, unknown>[];
      if (attempt >= 8 && keys.length > 0) throw new Error('DynamoDB kept keys of a job page unprocessed');
    }
    return sortKeys.flatMap((sk) => found.get(sk) ?? []);
  }

  /**
   * Records finished parts and bumps the job's counters in the same transactions, so the counters
   * always equal the part items. A part recorded again with the same ETag changes nothing; with a
   * new ETag (the part was sent again) it replaces the old record. Only while the job is `status`.
   */
  async recordParts(username: string, jobId: string, parts: PartRecord[], status: JobStatus): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const expires = now + this.retentionSeconds + 30 * 24 * 3600;
    const jobUpdate = (partsDelta: number, bytesDelta: number) => ({
      Update: {
        TableName: this.table,
        Key: { pk: userPk(username), sk: jobSk(jobId) },
        UpdateExpression: 'ADD partsDone :parts, bytesDone :bytes SET updatedAt = :now',
        ConditionExpression: '#status = :status',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':parts': partsDelta,
          ':bytes': bytesDelta,
          ':now': new Date().toISOString(),
          ':status': status,
        },
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
      },
    });
    const jobRejected = async () => {
      const current = await this.get(username, jobId);
      return new TransitionRejected(
        current ? `job ${jobId} is ${current.status}, not ${status}` : `no job ${jobId}`,
        current,
      );
    };

    // New parts: up to 99 puts plus the counter update per transaction (DynamoDB allows 100 items).
    const existing: PartRecord[] = [];
    for (let start = 0; start < parts.length; start += 99) {
      let batch = parts.slice(start, start + 99);
      while (batch.length > 0) {
        const transaction: TransactWriteCommandInput = {
          TransactItems: [
            jobUpdate(
              batch.length,
              batch.reduce((sum, part) => sum + part.size, 0),
            ),
            ...batch.map((part) => ({
              Put: {
                TableName: this.table,
                Item: {
                  pk: partPk(jobId),
                  sk: partSk(part.partNumber),
                  // Only the record's own fields: callers may pass richer part objects (S3's, with dates).
                  partNumber: part.partNumber,
                  etag: part.etag,
                  size: part.size,
                  expiresAt: expires,
                },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            })),
          ],
        };
        try {
          await withConflictRetry(() => this.db.send(new TransactWriteCommand(transaction)));
          batch = [];
        } catch (error) {
          const reasons = reasonsOf(error);
          if (reasons.length === 0) throw error;
          if (reasons[0]?.Code === 'ConditionalCheckFailed') throw await jobRejected();
          // Parts that were recorded before: set them aside and retry the rest of the batch.
          const known = new Set(
            reasons.flatMap((reason, index) =>
              index > 0 && reason.Code === 'ConditionalCheckFailed' ? [index - 1] : [],
            ),
          );
          if (known.size === 0) throw error;
          existing.push(...batch.filter((_, index) => known.has(index)));
          batch = batch.filter((_, index) => !known.has(index));
        }
      }
    }

    // Parts seen before: a no-op for the same ETag, a replacement (and a byte-count correction) otherwise.
    for (const part of existing) {
      const { Item } = await this.db.send(
        new GetCommand({
          TableName: this.table,
          Key: { pk: partPk(jobId), sk: partSk(part.partNumber) },
          ConsistentRead: true,
        }),
      );
      if (!Item || (Item.etag === part.etag && Item.size === part.size)) continue;
      try {
        await withConflictRetry(() =>
          this.db.send(
            new TransactWriteCommand({
              TransactItems: [
                jobUpdate(0, part.size - Number(Item.size)),
                {
                  Update: {
                    TableName: this.table,
                    Key: { pk: partPk(jobId), sk: partSk(part.partNumber) },
                    UpdateExpression: 'SET etag = :etag, #size = :size',
                    ConditionExpression: 'etag = :oldEtag AND #size = :oldSize',
                    ExpressionAttributeNames: { '#size': 'size' },
                    ExpressionAttributeValues: {
                      ':etag': part.etag,
                      ':size': part.size,
                      ':oldEtag': Item.etag,
                      ':oldSize': Item.size,
                    },
                  },
                },
              ],
            }),
          ),
        );
      } catch (error) {
        const reasons = reasonsOf(error);
        if (reasons[0]?.Code === 'ConditionalCheckFailed') throw await jobRejected();
        // The part changed under us: a concurrent record of the same part won, which is as good.
        if (reasons[1]?.Code === 'ConditionalCheckFailed') continue;
        throw error;
      }
    }
  }

  /**
   * A worker takes a job: a QUEUED one, a RUNNING one handed to `token` by the previous invocation,
   * or a RUNNING one whose lease ran out (its worker died). Throws TransitionRejected otherwise,
   * which is how a duplicate delivery of the same event finds out it has nothing to do.
   */
  async claimWorker(
    username: string,
    jobId: string,
    options: { token?: string | undefined; newToken: string; leaseSeconds: number },
  ): Promise<JobRecord> {
    const now = Math.floor(Date.now() / 1000);
    try {
      const { Attributes } = await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: userPk(username), sk: jobSk(jobId) },
          UpdateExpression:
            'SET #status = :running, ownerStatus = :ownerStatus, workerToken = :newToken, leaseUntil = :lease, updatedAt = :now ADD invocations :one',
          ConditionExpression:
            '#status = :queued OR (#status = :running AND (workerToken = :token OR leaseUntil < :epoch))',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':running': 'RUNNING',
            ':ownerStatus': ownerStatus(username, 'export', 'RUNNING'),
            ':queued': 'QUEUED',
            ':newToken': options.newToken,
            ':token': options.token ?? '-',
            ':lease': now + options.leaseSeconds,
            ':epoch': now,
            ':now': new Date().toISOString(),
            ':one': 1,
          },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return toJob(Attributes!);
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        const current = error.Item
          ? toJob(unmarshall(error.Item as Parameters<typeof unmarshall>[0]))
          : undefined;
        throw new TransitionRejected(
          current ? `job ${jobId} is ${current.status} and not handed to this worker` : `no job ${jobId}`,
          current,
        );
      }
      throw error;
    }
  }

  /**
   * The worker's heartbeat after each part: progress, checkpoint and a fresh lease, only while the
   * job is RUNNING under `token`. A kill (CANCELLING) makes it fail: that is how the worker notices.
   * `set` may also record type-specific fields (the output upload id) and hand the job to a new token.
   */
  async saveCheckpoint(
    username: string,
    jobId: string,
    token: string,
    update: {
      partsDone: number;
      bytesDone: number;
      checkpoint: { offset: number; partNumber: number };
      leaseSeconds: number;
      uploadId?: string;
      handOffTo?: string;
    },
  ): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const sets = [
      'partsDone = :partsDone',
      'bytesDone = :bytesDone',
      'checkpoint = :checkpoint',
      'leaseUntil = :lease',
      'updatedAt = :now',
    ];
    const values: Record<string, unknown> = {
      ':partsDone': update.partsDone,
      ':bytesDone': update.bytesDone,
      ':checkpoint': update.checkpoint,
      ':lease': now + update.leaseSeconds,
      ':now': new Date().toISOString(),
      ':running': 'RUNNING',
      ':token': token,
    };
    if (update.uploadId) {
      sets.push('uploadId = :uploadId');
      values[':uploadId'] = update.uploadId;
    }
    if (update.handOffTo) {
      sets.push('workerToken = :next');
      values[':next'] = update.handOffTo;
    }
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: userPk(username), sk: jobSk(jobId) },
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: '#status = :running AND workerToken = :token',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: values,
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        const current = error.Item
          ? toJob(unmarshall(error.Item as Parameters<typeof unmarshall>[0]))
          : undefined;
        throw new TransitionRejected(`job ${jobId} is no longer running under this worker`, current);
      }
      throw error;
    }
  }

  /**
   * Every job that has not finished, of every user: a scan of the sparse ActiveJobsByOwner index,
   * which holds only those, so it costs O(active jobs) however long the history. For the janitor.
   */
  async allActive(): Promise<JobRecord[]> {
    const jobs: JobRecord[] = [];
    for await (const page of paginateScan(
      { client: this.db },
      { TableName: this.table, IndexName: 'ActiveJobsByOwner' },
    )) {
      jobs.push(...(page.Items ?? []).map(toJob));
    }
    return jobs;
  }

  /**
   * Counts one restart of a job's worker, only if nobody counted it since `seen` was read: of two
   * janitors running at once, one restarts the worker.
   */
  async countRestart(job: JobRecord): Promise<boolean> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: userPk(job.username), sk: jobSk(job.jobId) },
          UpdateExpression: 'SET restarts = :next, updatedAt = :now',
          ConditionExpression: '#status = :status AND (attribute_not_exists(restarts) OR restarts = :seen)',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':next': (job.restarts ?? 0) + 1,
            ':seen': job.restarts ?? 0,
            ':status': job.status,
            ':now': new Date().toISOString(),
          },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /** Every recorded part of a job, in part order. */
  async parts(jobId: string): Promise<PartRecord[]> {
    const parts: PartRecord[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': partPk(jobId), ':prefix': 'PART#' },
        ProjectionExpression: 'partNumber, etag, #size',
        ExpressionAttributeNames: { '#size': 'size' },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) parts.push(item as PartRecord);
    }
    return parts;
  }
}
