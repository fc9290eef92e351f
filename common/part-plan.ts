/**
 * How a file is cut into parts, within S3's multipart limits: at most 10,000 parts, every part but
 * the last at least 5 MiB and at most 5 GiB, objects up to 5 TiB. Pure code, shared by lib/ (which
 * plans and enforces) and client/ (which checks before any request and reads the file by the plan).
 */
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * GiB;
export const MAX_PARTS = 10_000;
export const MAX_OBJECT_SIZE = 5 * TiB;
/** Like the AWS CLI: 8 MiB parts until a file needs bigger ones to stay within 10,000 parts. */
export const DEFAULT_PART_SIZE = 8 * MiB;

/** URLs handed out with a new upload; the rest come from POST /upload/{jobId}/parts. */
export const FIRST_URL_BATCH = 100;
/** Parts one `POST /upload/{jobId}/parts` (or progress report) may name. */
export const MAX_PARTS_PER_REQUEST = 1000;

export interface PartPlan {
  size: number;
  partSize: number;
  partCount: number;
}

export class PartPlanError extends Error {
  override name = 'PartPlanError';
}

/**
 * What is wrong with parts of `partSize` bytes for a file of `size` bytes, to follow "part size" or
 * the field's name; undefined when S3 would accept them.
 */
export function partSizeProblem(size: number, partSize: number): string | undefined {
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
    return `must be from 5 MiB to 5 GiB (${MIN_PART_SIZE} to ${MAX_PART_SIZE} bytes)`;
  }
  const partCount = Math.ceil(size / partSize);
  if (partCount > MAX_PARTS) {
    return `${partSize} would need ${partCount} parts; S3 allows ${MAX_PARTS}: use parts of at least ${Math.ceil(size / MAX_PARTS / MiB)} MiB`;
  }
  return undefined;
}

export function planParts(size: number, requestedPartSize?: number): PartPlan {
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_OBJECT_SIZE) {
    throw new PartPlanError(`size must be a whole number of bytes from 1 to ${MAX_OBJECT_SIZE} (5 TiB)`);
  }
  let partSize: number;
  if (requestedPartSize === undefined) {
    partSize = Math.max(DEFAULT_PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
  } else {
    const problem = partSizeProblem(size, requestedPartSize);
    if (problem) throw new PartPlanError(`partSize ${problem}`);
    partSize = requestedPartSize;
  }
  // A file smaller than one part is one part of its own size.
  partSize = Math.min(partSize, size);
  return { size, partSize, partCount: Math.ceil(size / partSize) };
}

/** The exact size part `partNumber` must have under `plan`. */
export function expectedPartSize(plan: PartPlan, partNumber: number): number {
  return partNumber < plan.partCount ? plan.partSize : plan.size - plan.partSize * (plan.partCount - 1);
}

/** Where part `partNumber` (1-based) lies in the file. */
export function partRange(plan: PartPlan, partNumber: number): { offset: number; length: number } {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > plan.partCount) {
    throw new RangeError(`part ${partNumber} is outside 1..${plan.partCount}`);
  }
  return { offset: (partNumber - 1) * plan.partSize, length: expectedPartSize(plan, partNumber) };
}

/** `[1,2,3,7,9,10]` -> `"1-3, 7, 9-10"`: part lists in messages stay short at 10,000 parts. */
export function describeRanges(numbers: readonly number[], max = 20): string {
  const ranges: string[] = [];
  let start: number | undefined;
  let previous: number | undefined;
  for (const n of [...numbers].sort((a, b) => a - b)) {
    if (previous !== undefined && n === previous + 1) {
      previous = n;
      continue;
    }
    if (start !== undefined) ranges.push(start === previous ? `${start}` : `${start}-${previous}`);
    start = previous = n;
  }
  if (start !== undefined) ranges.push(start === previous ? `${start}` : `${start}-${previous}`);
  return ranges.length > max ? `${ranges.slice(0, max).join(', ')}, …` : ranges.join(', ');
}
