import { type DynamoDBDocumentClient, paginateQuery } from '@aws-sdk/lib-dynamodb';
import type { Checksum } from '../../common/checksums.ts';
import { documentClient } from '../aws/clients.ts';
import { config } from '../config.ts';
import { FILE_SK_PREFIX, fileSk, userPk } from '../jobs/jobs-table.ts';

/**
 * What the service knows of each file it stored: the object's ETag and checksum as S3 reported them
 * when the upload completed. One item per user and file name in the jobs table (`FILE#<name>`),
 * written in the same transaction as the job's COMPLETED (JobStore.transition `alsoPut`), replaced by
 * the next completed upload of that name, never expired.
 *
 * GET /files shows a file's checksum only while S3's ETag is still the recorded one: an object
 * rewritten behind the service's back has no checksum the service vouches for.
 */
export interface FileRecord {
  name: string;
  etag: string;
  size: number;
  jobId: string;
  completedAt: string;
  checksum?: Checksum;
}

/** The item to write with a completion. */
export function fileRecordItem(username: string, record: FileRecord): Record<string, unknown> {
  return { pk: userPk(username), sk: fileSk(record.name), ...record };
}

export class FileRecords {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.db = db;
    this.table = table;
  }

  /** Every file record of a user, by name: one Query (a page per MB), whatever the number of files. */
  async list(username: string): Promise<Map<string, FileRecord>> {
    const records = new Map<string, FileRecord>();
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': userPk(username), ':prefix': FILE_SK_PREFIX },
        ProjectionExpression: '#name, etag, checksum',
        ExpressionAttributeNames: { '#name': 'name' },
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) records.set(String(item.name), item as FileRecord);
    }
    return records;
  }
}

let records: FileRecords | undefined;

export function fileRecords(): FileRecords {
  records ??= new FileRecords(documentClient(), config().jobsTable);
  return records;
}
