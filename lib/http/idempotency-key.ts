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

/** Where a request may carry its key besides the header, and what it holds there. */
export interface KeyInBody {
  /** The field's path as an error names it (`body.metadata.idempotencyKey`). */
  path: string;
  value: unknown;
}

/**
 * The request's Idempotency-Key (common/idempotency.ts) with a fingerprint of what the request asks
 * for, or undefined when it sent none; 400 for a malformed key. `request` is the validated body, so
 * that two bodies that ask the same thing (one leaving a default out) have one fingerprint, less the
 * key itself where the body carries it (`keyInBody`: for clients that cannot set a header).
 */
export function idempotencyOf(
  event: HttpEvent,
  request: Record<string, unknown>,
  keyInBody?: KeyInBody,
): IdempotencyRecord | undefined {
  const malformed = (path: string, where: string) =>
    badRequest(
      'ValidationError',
      `invalid request: ${where} must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters`,
      { issues: [{ path, message: 'malformed' }] },
    );
  // httpHeaderNormalizer has lower-cased the names.
  const header = event.headers?.[IDEMPOTENCY_KEY_HEADER.toLowerCase()];
  const fromHeader = header === undefined ? undefined : parseIdempotencyKey(header);
  if (header !== undefined && fromHeader === undefined) {
    throw malformed(`headers.${IDEMPOTENCY_KEY_HEADER}`, `the ${IDEMPOTENCY_KEY_HEADER} header`);
  }
  let fromBody: string | undefined;
  if (keyInBody && keyInBody.value !== undefined && keyInBody.value !== null) {
    const { path, value } = keyInBody;
    fromBody = typeof value === 'string' ? parseIdempotencyKey(value) : undefined;
    if (fromBody === undefined) throw malformed(path, path);
    if (fromHeader !== undefined && fromHeader !== fromBody) {
      throw badRequest(
        'ValidationError',
        `invalid request: the ${IDEMPOTENCY_KEY_HEADER} header and ${path} name two keys; send one`,
        { issues: [{ path, message: `differs from the ${IDEMPOTENCY_KEY_HEADER} header` }] },
      );
    }
  }
  const key = fromHeader ?? fromBody;
  if (key === undefined) return undefined;
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
