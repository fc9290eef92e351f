import {
  BatchGetCommand,
  paginateQuery,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import {
  type JobRecord,
  type JobStatus,
  JobsTableAdapter,
  jobSk,
  type PartRecord,
  partPk,
  partSk,
  reasonsOf,
  rejectionOf,
  sleep,
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
/** Keys per BatchGetItem: DynamoDB's limit. */
const KEYS_PER_BATCH_GET = 100;
/** Rounds of read-then-write when concurrent records of the same parts keep changing them under us. */
const MAX_RECORD_ROUNDS = 5;

const sameRecord = (a: PartRecord | undefined, b: PartRecord) =>
  a !== undefined && a.etag === b.etag && a.size === b.size && a.checksum === b.checksum;

/** Only the record's own fields: callers may pass richer part objects (S3's, with dates). */
const ownFields = (part: PartRecord): PartRecord => ({
  partNumber: Number(part.partNumber),
  etag: String(part.etag),
  size: Number(part.size),
  ...(part.checksum ? { checksum: String(part.checksum) } : {}),
});
const PROJECTION = 'partNumber, etag, #size, checksum';

export class PartRecords extends JobsTableAdapter {
  /**
   * Records finished parts and moves the job's counters in the same transactions, so the counters
   * always equal the part items. A part recorded again with the same ETag and size changes nothing;
   * with a new one (the part was sent again) it replaces the old record and corrects the byte count.
   * Only while the job is `status`.
   *
   * Batched, whatever the number of parts: the recorded ones are read with BatchGetItem (100 keys a
   * call), identical ones are skipped, and the rest are written in transactions of up to 99 parts
   * plus the job's counters. Each write is conditional on what was read (absent, or the same ETag
   * and size), so a concurrent record of the same part makes the transaction fail as a whole: its
   * parts are read again and written again. 1,000 parts cost 10 reads and at most 11 writes.
   */
  async record(username: string, jobId: string, parts: PartRecord[], status: JobStatus): Promise<void> {
    const expires = Math.floor(Date.now() / 1000) + this.retentionSeconds + PART_RECORDS_OUTLIVE_JOB_SECONDS;
    const describe = (current: JobRecord | undefined) =>
      current ? `job ${jobId} is ${current.status}, not ${status}` : `no job ${jobId}`;
    // One record per part number (the last one given wins).
    let pending = [...new Map(parts.map((part) => [part.partNumber, ownFields(part)])).values()];

    for (let round = 1; pending.length > 0; round++) {
      if (round > MAX_RECORD_ROUNDS)
        throw new Error(`the parts of job ${jobId} kept changing while they were recorded`);
      const recorded = await this.read(
        jobId,
        pending.map((part) => part.partNumber),
      );
      const writes = pending.filter((part) => !sameRecord(recorded.get(part.partNumber), part));
      const again: PartRecord[] = [];
      for (let start = 0; start < writes.length; start += PARTS_PER_TRANSACTION) {
        const batch = writes.slice(start, start + PARTS_PER_TRANSACTION);
        const transaction = this.transaction(username, jobId, status, expires, batch, recorded);
        try {
          await withConflictRetry(() => this.db.send(new TransactWriteCommand(transaction)));
        } catch (error) {
          const rejected = rejectionOf(error, describe);
          if (rejected) throw rejected;
          // A part changed since it was read (a concurrent record of it): read the batch again.
          if (!reasonsOf(error).some((reason) => reason.Code === 'ConditionalCheckFailed')) throw error;
          again.push(...batch);
        }
      }
      pending = again;
    }
  }

  /** One transaction: the job's counters (first, so that a lost status is reason 0), then the parts. */
  private transaction(
    username: string,
    jobId: string,
    status: JobStatus,
    expires: number,
    batch: PartRecord[],
    recorded: ReadonlyMap<number, PartRecord>,
  ): TransactWriteCommandInput {
    let partsDelta = 0;
    let bytesDelta = 0;
    const items: NonNullable<TransactWriteCommandInput['TransactItems']> = [];
    for (const part of batch) {
      const old = recorded.get(part.partNumber);
      const Key = { pk: partPk(jobId), sk: partSk(part.partNumber) };
      if (old) {
        bytesDelta += part.size - old.size;
        // The whole item is replaced, on the condition that it is still what was read.
        items.push({
          Put: {
            TableName: this.table,
            Item: { ...Key, ...part, expiresAt: expires },
            ConditionExpression: `etag = :oldEtag AND #size = :oldSize AND ${old.checksum === undefined ? 'attribute_not_exists(checksum)' : 'checksum = :oldChecksum'}`,
            ExpressionAttributeNames: { '#size': 'size' },
            ExpressionAttributeValues: {
              ':oldEtag': old.etag,
              ':oldSize': old.size,
              ...(old.checksum === undefined ? {} : { ':oldChecksum': old.checksum }),
            },
          },
        });
      } else {
        partsDelta += 1;
        bytesDelta += part.size;
        items.push({
          Put: {
            TableName: this.table,
            Item: { ...Key, ...part, expiresAt: expires },
            ConditionExpression: 'attribute_not_exists(pk)',
          },
        });
      }
    }
    return {
      TransactItems: [
        {
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
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        },
        ...items,
      ],
    };
  }

  /** The recorded parts among `partNumbers`: BatchGetItem, 100 keys a call, unprocessed keys asked again. */
  private async read(jobId: string, partNumbers: number[]): Promise<Map<number, PartRecord>> {
    const found = new Map<number, PartRecord>();
    const chunks: number[][] = [];
    for (let start = 0; start < partNumbers.length; start += KEYS_PER_BATCH_GET)
      chunks.push(partNumbers.slice(start, start + KEYS_PER_BATCH_GET));
    await Promise.all(
      chunks.map(async (chunk) => {
        let keys: Record<string, unknown>[] = chunk.map((n) => ({ pk: partPk(jobId), sk: partSk(n) }));
        for (let attempt = 0; keys.length > 0; attempt++) {
          if (attempt >= 10) throw new Error(`DynamoDB kept part records of job ${jobId} unprocessed`);
          if (attempt > 0) await sleep(Math.random() * 20 * 2 ** Math.min(attempt, 6));
          const result = await this.db.send(
            new BatchGetCommand({
              RequestItems: {
                [this.table]: {
                  Keys: keys,
                  ConsistentRead: true,
                  ProjectionExpression: PROJECTION,
                  ExpressionAttributeNames: { '#size': 'size' },
                },
              },
            }),
          );
          for (const item of result.Responses?.[this.table] ?? []) {
            const part = ownFields(item as PartRecord);
            found.set(part.partNumber, part);
          }
          // DynamoDB may leave some keys unprocessed under load; they are asked for again.
          keys = (result.UnprocessedKeys?.[this.table]?.Keys ?? []) as Record<string, unknown>[];
        }
      }),
    );
    return found;
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
        ProjectionExpression: PROJECTION,
        ExpressionAttributeNames: { '#size': 'size' },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) parts.push(ownFields(item as PartRecord));
    }
    return parts;
  }
}
