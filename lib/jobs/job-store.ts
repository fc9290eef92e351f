import {
  BatchGetCommand,
  GetCommand,
  paginateQuery,
  paginateScan,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  type ActiveSlot,
  counterSk,
  createdSk,
  hasExpired,
  IdempotencyKeyUsed,
  type IdempotencyRecord,
  idempotencySk,
  itemOf,
  type JobHolds,
  type JobRecord,
  type JobStatus,
  JobsTableAdapter,
  type JobType,
  jobSk,
  LimitReached,
  ownerStatus,
  ownerType,
  reasonsOf,
  rejectionOf,
  SlotTaken,
  sleep,
  slotSk,
  TERMINAL_STATUSES,
  toJob,
  typesWithStatus,
  userPk,
  withConflictRetry,
} from './jobs-table.ts';

/**
 * How long an Idempotency-Key keeps answering with the job it made: a day, as Stripe keeps its keys;
 * long enough for any client's retries, short enough that the records do not pile up.
 */
export const IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600;

/**
 * A job's life in the jobs table (see jobs-table.ts for the items): created with its active slot,
 * its share of the user's counters and the minute's creation count in one transaction, each checked
 * against the user's limits there; read, listed; moved from status to status by conditional writes,
 * a terminal one freeing the slot and giving back the job's share (`holds`) in the same transaction.
 */

/** Limits a new job is admitted under (lib/jobs/limits.ts builds them from the configuration). */
export interface Quota {
  /** Most unfinished jobs of the new job's type, the new one included. */
  maxRunning?: number;
  /** Most declared bytes of unfinished jobs of the type, the new one's size included. */
  maxBytes?: number;
  /** Most jobs (of any type) created in one calendar minute. */
  maxPerMinute?: number;
}

/** What the user's counters held, as a create read them or found them when it was refused. */
interface Usage {
  running: number;
  bytes: number;
  createdThisMinute: number;
}

/** Suggested waits before a new job may fit: nobody knows when a running one will finish. */
const RUNNING_RETRY_AFTER_SECONDS: Record<JobType, number> = { upload: 60, export: 10 };

/** The first limit that `usage` plus a job of `type` and `size` bytes would break, if any. */
function limitBroken(type: JobType, size: number, usage: Usage, quota: Quota, nowMs: number) {
  if (quota.maxRunning !== undefined && usage.running + 1 > quota.maxRunning) {
    const limit = type === 'upload' ? 'uploadsInFlight' : 'exportsRunning';
    return new LimitReached(limit, quota.maxRunning, RUNNING_RETRY_AFTER_SECONDS[type]);
  }
  if (quota.maxBytes !== undefined && usage.bytes + size > quota.maxBytes) {
    return new LimitReached('uploadBytesInFlight', quota.maxBytes, RUNNING_RETRY_AFTER_SECONDS[type]);
  }
  if (quota.maxPerMinute !== undefined && usage.createdThisMinute + 1 > quota.maxPerMinute) {
    return new LimitReached('jobsPerMinute', quota.maxPerMinute, 60 - Math.floor((nowMs % 60_000) / 1000));
  }
  return undefined;
}

const epochMinute = (nowMs: number) => Math.floor(nowMs / 60_000);
/** Creation counts outlive their minute by an hour, then DynamoDB's TTL removes them. */
const CREATED_ITEM_TTL_SECONDS = 3600;

export interface TransitionOptions {
  from: readonly JobStatus[];
  to: JobStatus;
  /** Attributes to set along with the status. */
  set?: Partial<
    Pick<
      JobRecord,
      | 'partsDone'
      | 'bytesDone'
      | 'error'
      | 'uploadId'
      | 'details'
      | 'size'
      | 'partSize'
      | 'partCount'
      | 'checksum'
    >
  >;
  /**
   * An item written in the same transaction as a terminal change (the file record of a completed
   * upload: lib/files/file-records.ts), so that it exists exactly when the change happened.
   */
  alsoPut?: Record<string, unknown>;
  /**
   * Required for a terminal status: frees the active slot, gives back what the job holds of the
   * user's counters, and starts the retention clock (TTL).
   */
  slot?: ActiveSlot;
  /** Only if the job's `updatedAt` is still this: nothing happened to it since it was read. */
  ifUpdatedAt?: string;
  /** Only while the job is held by this worker token (fencing: a worker whose lease ran out loses). */
  token?: string;
}

export class JobStore extends JobsTableAdapter {
  /**
   * Writes a new job, claims its active slot and, under a quota, adds the job to the user's counters
   * (RUNNING#<type>: one job, its declared bytes) and to this minute's creations (CREATED#<minute>),
   * all in one transaction whose conditions are the limits. Throws SlotTaken (naming the holder) when
   * another job of the same type is active for the same name, LimitReached (naming the limit) when
   * the job does not fit; either way nothing is written. The job records what it added (`holds`),
   * which its terminal transition gives back.
   */
  async create(
    job: JobRecord,
    slotName: string,
    quota: Quota = {},
    nowMs = Date.now(),
    idempotency?: IdempotencyRecord,
  ): Promise<void> {
    const pk = userPk(job.username);
    const counted = quota.maxRunning !== undefined || quota.maxBytes !== undefined;
    const holds: JobHolds = counted
      ? { running: 1, bytes: job.type === 'upload' ? job.size : 0 }
      : { running: 0, bytes: 0 };
    const items: NonNullable<TransactWriteCommandInput['TransactItems']> = [
      {
        Put: {
          TableName: this.table,
          Item: {
            pk,
            sk: jobSk(job.jobId),
            activeOwner: `${job.type}#${job.username}`,
            ownerType: ownerType(job.username, job.type),
            ownerStatus: ownerStatus(job.username, job.type, job.status),
            ...job,
            holds,
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      },
      {
        Put: {
          TableName: this.table,
          Item: {
            pk,
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
    ];
    let counterAt = -1;
    if (counted) {
      const conditions: string[] = [];
      const values: Record<string, number> = { ':running': holds.running };
      if (quota.maxRunning !== undefined) {
        conditions.push('(attribute_not_exists(running) OR running < :maxRunning)');
        values[':maxRunning'] = quota.maxRunning;
      }
      if (quota.maxBytes !== undefined) {
        conditions.push('(attribute_not_exists(bytes) OR bytes <= :room)');
        values[':room'] = quota.maxBytes - holds.bytes;
      }
      if (holds.bytes > 0) values[':bytes'] = holds.bytes;
      counterAt =
        items.push({
          Update: {
            TableName: this.table,
            Key: { pk, sk: counterSk(job.type) },
            UpdateExpression: `ADD running :running${holds.bytes > 0 ? ', bytes :bytes' : ''}`,
            ConditionExpression: conditions.join(' AND '),
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        }) - 1;
    }
    let createdAt = -1;
    if (quota.maxPerMinute !== undefined) {
      const minute = epochMinute(nowMs);
      createdAt =
        items.push({
          Update: {
            TableName: this.table,
            Key: { pk, sk: createdSk(minute) },
            UpdateExpression: 'ADD created :one SET expiresAt = :expires',
            ConditionExpression: 'attribute_not_exists(created) OR created < :max',
            ExpressionAttributeValues: {
              ':one': 1,
              ':max': quota.maxPerMinute,
              ':expires': (minute + 1) * 60 + CREATED_ITEM_TTL_SECONDS,
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        }) - 1;
    }
    let keyAt = -1;
    if (idempotency) {
      keyAt =
        items.push({
          Put: {
            TableName: this.table,
            Item: {
              pk,
              sk: idempotencySk(idempotency.key),
              jobId: job.jobId,
              type: job.type,
              fingerprint: idempotency.fingerprint,
              createdAt: job.createdAt,
              expiresAt: Math.floor(nowMs / 1000) + IDEMPOTENCY_KEY_TTL_SECONDS,
            },
            // An expired record that DynamoDB's TTL has not removed yet no longer counts.
            ConditionExpression: `attribute_not_exists(pk) OR expiresAt < :now${idempotency.supersedes ? ' OR jobId = :superseded' : ''}`,
            ExpressionAttributeValues: {
              ':now': Math.floor(nowMs / 1000),
              ...(idempotency.supersedes ? { ':superseded': idempotency.supersedes } : {}),
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        }) - 1;
    }
    try {
      await withConflictRetry(() => this.db.send(new TransactWriteCommand({ TransactItems: items })));
    } catch (error) {
      const reasons = reasonsOf(error);
      // First: a repeat of a request whose job exists is answered with that job, whatever else
      // (its slot, the limits) the repeat would also have run into.
      const earlier = keyAt >= 0 ? itemOf(reasons[keyAt]) : undefined;
      if (earlier) {
        throw new IdempotencyKeyUsed({
          jobId: String(earlier.jobId),
          fingerprint: String(earlier.fingerprint),
        });
      }
      const holder = itemOf(reasons[1]);
      if (holder) throw new SlotTaken({ jobId: holder.jobId, type: holder.type, name: holder.name });
      const failed = (index: number) => index >= 0 && reasons[index]?.Code === 'ConditionalCheckFailed';
      if (failed(counterAt) || failed(createdAt)) {
        // The items as the refused transaction found them (a reason without a failure carries none).
        const counter = failed(counterAt) ? itemOf(reasons[counterAt]) : undefined;
        const created = failed(createdAt) ? itemOf(reasons[createdAt]) : undefined;
        const usage: Usage = {
          running: Number(counter?.running ?? 0),
          bytes: Number(counter?.bytes ?? 0),
          createdThisMinute: Number(created?.created ?? 0),
        };
        // Without the item in the reason (a store that does not return it), the failed item says which.
        const fallback: Usage = failed(counterAt)
          ? { running: Number.MAX_SAFE_INTEGER, bytes: 0, createdThisMinute: 0 }
          : { running: 0, bytes: 0, createdThisMinute: Number.MAX_SAFE_INTEGER };
        throw (
          limitBroken(job.type, holds.bytes, usage, quota, nowMs) ??
          limitBroken(job.type, holds.bytes, fallback, { ...quota, maxBytes: undefined }, nowMs) ??
          error
        );
      }
      throw error;
    }
  }

  /**
   * Refuses, for one read, a job that a limit already reached would refuse: so that a caller at its
   * limit costs no S3 call (a multipart upload opened, then aborted). Advisory: the create
   * transaction is the judge, and a job this lets through may still be refused there.
   */
  async checkQuota(
    username: string,
    type: JobType,
    size: number,
    quota: Quota,
    nowMs = Date.now(),
  ): Promise<void> {
    const pk = userPk(username);
    const keys = [
      { pk, sk: counterSk(type) },
      { pk, sk: createdSk(epochMinute(nowMs)) },
    ];
    const result = await this.db.send(
      new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }),
    );
    const items = new Map((result.Responses?.[this.table] ?? []).map((item) => [String(item.sk), item]));
    const counter = items.get(keys[0]!.sk);
    const usage: Usage = {
      running: Number(counter?.running ?? 0),
      bytes: Number(counter?.bytes ?? 0),
      createdThisMinute: Number(items.get(keys[1]!.sk)?.created ?? 0),
    };
    const broken = limitBroken(type, type === 'upload' ? size : 0, usage, quota, nowMs);
    if (broken) throw broken;
  }

  /** The job an Idempotency-Key made, while the key lives (IDEMPOTENCY_KEY_TTL_SECONDS). */
  async findByIdempotencyKey(
    username: string,
    key: string,
    nowMs = Date.now(),
  ): Promise<{ jobId: string; fingerprint: string } | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: { pk: userPk(username), sk: idempotencySk(key) },
        ConsistentRead: true,
      }),
    );
    if (!Item || Number(Item.expiresAt) < Math.floor(nowMs / 1000)) return undefined;
    return { jobId: String(Item.jobId), fingerprint: String(Item.fingerprint) };
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
    const describe = (current: JobRecord | undefined) =>
      current ? `job ${jobId} is ${current.status}, not ${options.from.join(' or ')}` : `no job ${jobId}`;

    if (TERMINAL_STATUSES.has(options.to) && !options.slot)
      throw new Error(`a change to ${options.to} must name the job's slot, which it frees`);
    if (options.alsoPut && !TERMINAL_STATUSES.has(options.to))
      throw new Error('only a terminal change writes another item with it');
    if (!options.slot || !TERMINAL_STATUSES.has(options.to)) {
      try {
        const { Attributes } = await withConflictRetry(() =>
          this.db.send(
            new UpdateCommand({
              ...update,
              ReturnValues: 'ALL_NEW',
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            }),
          ),
        );
        return toJob(Attributes!);
      } catch (error) {
        throw rejectionOf(error, describe) ?? error;
      }
    }

    const slot = options.slot;
    // What the job added to its type's counter when it was created, given back in this transaction.
    const holds = await this.holdsOf(username, jobId, slot.type);
    const release =
      holds.running !== 0 || holds.bytes !== 0
        ? [
            {
              Update: {
                TableName: this.table,
                Key: { pk: userPk(username), sk: counterSk(slot.type) },
                UpdateExpression: `ADD running :running${holds.bytes !== 0 ? ', bytes :bytes' : ''}`,
                ExpressionAttributeValues: {
                  ':running': -holds.running,
                  ...(holds.bytes !== 0 ? { ':bytes': -holds.bytes } : {}),
                },
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
              ...(options.alsoPut ? [{ Put: { TableName: this.table, Item: options.alsoPut } }] : []),
            ],
          }),
        ),
      );
    } catch (error) {
      throw rejectionOf(error, describe) ?? error;
    }
    return (await this.get(username, jobId, { includeExpired: true }))!;
  }

  /**
   * What a job holds of its type's counter. `holds` never changes after the create, so reading it
   * before the terminal transaction is as good as reading it inside. Exports created before jobs
   * recorded it held one running unit each (the only counted jobs then).
   */
  private async holdsOf(username: string, jobId: string, type: JobType): Promise<JobHolds> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: { pk: userPk(username), sk: jobSk(jobId) },
        ProjectionExpression: 'holds',
        ConsistentRead: true,
      }),
    );
    if (!Item) return { running: 0, bytes: 0 };
    const holds = Item.holds as Partial<JobHolds> | undefined;
    if (!holds) return { running: type === 'export' ? 1 : 0, bytes: 0 };
    return { running: Number(holds.running ?? 0), bytes: Number(holds.bytes ?? 0) };
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
}
