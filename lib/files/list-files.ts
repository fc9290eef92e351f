import { fileStore } from '../storage/index.ts';
import { uploadsPrefix } from '../storage/keys.ts';

export interface FileEntry {
  name: string;
  size: number;
  lastModified: string;
}

/** The caller's uploads folder. Only completed uploads are objects, so nothing half-written shows. */
export async function listFiles(username: string): Promise<FileEntry[]> {
  const prefix = uploadsPrefix(username);
  const objects = await fileStore().list(prefix);
  return objects.map((object) => ({
    name: object.key.slice(prefix.length),
    size: object.size,
    lastModified: object.lastModified.toISOString(),
  }));
}
