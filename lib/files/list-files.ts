import type { Checksum } from '../../common/checksums.ts';
import { fileStore } from '../storage/index.ts';
import { uploadsPrefix } from '../storage/keys.ts';
import { fileRecords } from './file-records.ts';

export interface FileEntry {
  name: string;
  size: number;
  lastModified: string;
  /** The checksum S3 reported when the service completed this very object (same ETag), if any. */
  checksum?: Checksum;
}

/** The caller's uploads folder. Only completed uploads are objects, so nothing half-written shows. */
export async function listFiles(username: string): Promise<FileEntry[]> {
  const prefix = uploadsPrefix(username);
  const [objects, records] = await Promise.all([fileStore().list(prefix), fileRecords().list(username)]);
  return objects.map((object) => {
    const name = object.key.slice(prefix.length);
    const record = records.get(name);
    const checksum = record?.etag === object.etag ? record.checksum : undefined;
    return {
      name,
      size: object.size,
      lastModified: object.lastModified.toISOString(),
      ...(checksum ? { checksum } : {}),
    };
  });
}
