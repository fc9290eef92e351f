/**
 * How a file is cut into parts, within S3's multipart limits: at most 10,000 parts, every part but
 * the last at least 5 MiB and at most 5 GiB, objects up to 5 TiB.
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

export interface PartPlan {
  size: number;
  partSize: number;
  partCount: number;
}

export class PartPlanError extends Error {
  override name = 'PartPlanError';
}

export function planParts(size: number, requestedPartSize?: number): PartPlan {
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_OBJECT_SIZE) {
    throw new PartPlanError(`size must be a whole number of bytes from 1 to ${MAX_OBJECT_SIZE} (5 TiB)`);
  }
  const smallestFitting = Math.ceil(size / MAX_PARTS / MiB) * MiB;
  let partSize: number;
  if (requestedPartSize === undefined) {
    partSize = Math.max(DEFAULT_PART_SIZE, smallestFitting);
  } else {
    if (
      !Number.isSafeInteger(requestedPartSize) ||
      requestedPartSize < MIN_PART_SIZE ||
      requestedPartSize > MAX_PART_SIZE
    ) {
      throw new PartPlanError(
        `partSize must be from ${MIN_PART_SIZE} (5 MiB) to ${MAX_PART_SIZE} (5 GiB) bytes`,
      );
    }
    if (Math.ceil(size / requestedPartSize) > MAX_PARTS) {
      throw new PartPlanError(
        `partSize ${requestedPartSize} would need more than ${MAX_PARTS} parts; use at least ${Math.ceil(size / MAX_PARTS)}`,
      );
    }
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
