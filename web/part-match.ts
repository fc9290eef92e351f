/**
 * Whether the parts S3 holds of an upload are a local file's: what lets the console resume an upload
 * job that another page started (another browser, or one whose stored state is gone) without
 * trusting a file name. Nothing else ties the two: the page that started the job kept its link to the
 * file (Golden Retriever) and this page has only the name and the bytes.
 *
 * The S3 model. With SSE-S3 (the bucket's default encryption, serverless.yml) or none, the ETag S3
 * gives each part of a multipart upload is the hex MD5 of that part's bytes; S3's ListParts answers
 * each part's number, size and ETag. So a local file is the one being uploaded when, for every part S3
 * holds, the same byte range of the file has that size and that MD5. An ETag that is not 32 hex digits
 * (SSE-KMS, or another store) proves nothing, and the parts are then not this file's.
 *
 * The byte ranges are the console's chunk plan, which Uppy is given (`getChunkSize`), so both cut a
 * file the same way in every browser: equal parts of `consoleChunkSize`, the last one shorter.
 */
import { createMD5 } from 'hash-wasm';
import { MAX_PARTS, MIN_PART_SIZE, MiB } from '../common/part-plan.ts';
import { hexDigestOf } from './part-checksums.ts';

/**
 * The console's part size for a file: about a sixteenth of it, from 5 MiB (S3's smallest part) to
 * 64 MiB, and more only to stay within S3's 10,000 parts. Every part costs a URL request and a
 * browser request on top of its bytes: `node bench/console.ts` (256 MiB, this 2-core machine, six
 * parts in flight) took 4.4 s in 5 MiB parts and 3.3 s in 16 MiB ones. Larger parts cost a page
 * closed mid-way more bytes to send again.
 */
export function consoleChunkSize(size: number): number {
  const sixteenth = Math.ceil(size / 16 / MiB) * MiB;
  return Math.max(Math.min(Math.max(sixteenth, MIN_PART_SIZE), 64 * MiB), Math.ceil(size / MAX_PARTS));
}

/** A part as Companion's part list (GET /s3/multipart/{uploadId}) answers it. */
export interface ListedPart {
  PartNumber: number;
  ETag: string;
  Size: number;
}

export type PartMatch = { same: true; parts: number } | { same: false; partNumber: number; why: string };

/** Hex MD5 of a blob, read a slice at a time: a part may be hundreds of MiB. */
export async function md5Hex(blob: Blob): Promise<string> {
  return hexDigestOf(await createMD5(), blob);
}

/** An ETag as S3 lists it (quoted or not), as the hex MD5 it is under SSE-S3; undefined when it is not one. */
const md5OfEtag = (etag: string): string | undefined => {
  const hex = etag.replace(/^"|"$/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(hex) ? hex : undefined;
};

/** Whether the part S3 lists with this ETag holds exactly these bytes (see the top of this file). */
export async function etagIsMd5Of(etag: string, bytes: Blob): Promise<boolean> {
  const md5 = md5OfEtag(etag);
  return md5 !== undefined && md5 === (await md5Hex(bytes));
}

/** Compares the parts S3 holds with the same ranges of `file`; the first that differs says why. */
export async function matchParts(file: Blob, parts: ListedPart[]): Promise<PartMatch> {
  const chunk = consoleChunkSize(file.size);
  const count = Math.ceil(file.size / chunk);
  for (const part of [...parts].sort((a, b) => a.PartNumber - b.PartNumber)) {
    const start = (part.PartNumber - 1) * chunk;
    const end = Math.min(start + chunk, file.size);
    if (part.PartNumber < 1 || part.PartNumber > count) {
      return { same: false, partNumber: part.PartNumber, why: `this file has ${count} part(s)` };
    }
    if (part.Size !== end - start) {
      return {
        same: false,
        partNumber: part.PartNumber,
        why: `S3 holds ${part.Size} bytes, not ${end - start}`,
      };
    }
    if (md5OfEtag(part.ETag) === undefined) {
      return { same: false, partNumber: part.PartNumber, why: 'its ETag is not an MD5' };
    }
    if (!(await etagIsMd5Of(part.ETag, file.slice(start, end)))) {
      return { same: false, partNumber: part.PartNumber, why: 'its bytes differ' };
    }
  }
  return { same: true, parts: parts.length };
}
