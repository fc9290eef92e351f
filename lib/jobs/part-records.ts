import {
  type DynamoDBDocumentClient,
  GetCommand,
  paginateQuery,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import {
  type JobRecord,
  type JobStatus,
  jobSk,
  type PartRecord,
  partPk,
  partSk,
  reasonsOf,
  rejectionOf,
  userPk,
  withConflictRetry,
} from './jobs-table.ts';

/**
 * An upload's recorded parts: one item per part (an upload may have 10,000, far past what one item
 * can hold), written in the same transactions as the job's counters, so the counters always equal
 * the items. Only while the job is in the status the caller names.
 */

/** Part items outlive their job's retention by this much, so a job never reads half its parts. */
const PART_RECORDS_OUTLIVE_JOB_SECONDS = 30 * 24 * 3600;

/** Parts per transaction: DynamoDB allows 100 items, one of which is the job's counters. */
const PARTS_PER_TRANSACTION = 99;

export class PartRecords {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;
  private readonly retentionSeconds: number;

  constructor(db: DynamoDBDocumentClient, table: string, retentionSeconds: number) {
    this.db = db;
    this.table = table;
    this.retentionSeconds = retentionSeconds;
  }

  /**
   * Records finished parts and bumps the job's counters in the same transactions, so the counters
   * always equal the part items. A part recorded again with the same ETag changes nothing; with a
   * new ETag (the part was sent again) it replaces the old record. Only while the job is `status`.
   */
  async record(username: string, jobId: string, parts: PartRecord[], status: JobStatus): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const expires = now + this.retentionSeconds + PART_RECORDS_OUTLIVE_JOB_SECONDS;
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
    const describe = (current: JobRecord | undefined) =>
      current ? `job ${jobId} is ${current.status}, not ${status}` : `no job ${jobId}`;

    const existing: PartRecord[] = [];
    for (let start = 0; start < parts.length; start += PARTS_PER_TRANSACTION) {
      let batch = parts.slice(start, start + PARTS_PER_TRANSACTION);
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
          const rejected = rejectionOf(error, describe);
          if (rejected) throw rejected;
          const reasons = reasonsOf(error);
          if (reasons.length === 0) throw error;
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
        const rejected = rejectionOf(error, describe);
        if (rejected) throw rejected;
        const reasons = reasonsOf(error);
        // The part changed under us: a concurrent record of the same part won, which is as good.
        if (reasons[1]?.Code === 'ConditionalCheckFailed') continue;
        throw error;
      }
    }
  }

  /** Every recorded part of a job, in part order. */
  async list(jobId: string): Promise<PartRecord[]> {
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
