import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  paginateQuery,
  paginateScan,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  type ActiveSlot,
  counterSk,
  hasExpired,
  itemOf,
  type JobRecord,
  type JobStatus,
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
 * A job's life in the jobs table (see jobs-table.ts for the items): created with its active slot
 * (and, with a limit, a unit of the user's running counter) in one transaction; read, listed; moved
 * from status to status by conditional writes, a terminal one freeing the slot and the counter.
 */

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
    const describe = (current: JobRecord | undefined) =>
      current ? `job ${jobId} is ${current.status}, not ${options.from.join(' or ')}` : `no job ${jobId}`;

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
      throw rejectionOf(error, describe) ?? error;
    }
    return (await this.get(username, jobId, { includeExpired: true }))!;
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
