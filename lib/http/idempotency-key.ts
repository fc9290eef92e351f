import { createHash } from 'node:crypto';
import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseIdempotencyKey,
} from '../../common/idempotency.ts';
import type { IdempotencyRecord } from '../jobs/jobs-table.ts';
import { badRequest } from './errors.ts';
import type { HttpEvent } from './types.ts';

/**
 * The request's Idempotency-Key (common/idempotency.ts) with a fingerprint of what the request asks
 * for, or undefined when it sent none; 400 for a malformed key. `request` is the validated body, so
 * that two bodies that ask the same thing (one leaving a default out) have one fingerprint.
 */
export function idempotencyOf(
  event: HttpEvent,
  request: Record<string, unknown>,
): IdempotencyRecord | undefined {
  // httpHeaderNormalizer has lower-cased the names.
  const value = event.headers?.[IDEMPOTENCY_KEY_HEADER.toLowerCase()];
  if (value === undefined) return undefined;
  const key = parseIdempotencyKey(value);
  if (key === undefined) {
    throw badRequest(
      'ValidationError',
      `invalid request: the ${IDEMPOTENCY_KEY_HEADER} header must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters`,
      { issues: [{ path: `headers.${IDEMPOTENCY_KEY_HEADER}`, message: 'malformed' }] },
    );
  }
  const fields = Object.keys(request)
    .sort()
    .filter((name) => request[name] !== undefined)
    .map((name) => [name, request[name]]);
  const fingerprint = createHash('sha256')
    .update(`${event.routeKey}\n${JSON.stringify(fields)}`)
    .digest('base64url');
  return { key, fingerprint };
}

/** The answer's headers: whether it repeats the job of an earlier request with the same key. */
export const replayHeaders = (replayed: boolean): Record<string, string> =>
  replayed ? { [IDEMPOTENT_REPLAYED_HEADER.toLowerCase()]: 'true' } : {};
