/**
 * `Idempotency-Key` (the IETF httpapi draft "The Idempotency-Key HTTP Header Field", as Stripe uses
 * it): a client that sends a key of its choosing with POST /upload (JSON) or POST /export gets, for
 * every repeat of that request with that key within a day, the job the first one created. A retry
 * after a lost answer (a timeout, a dropped connection, a 503 from a dependency that failed after the
 * job was written) then never creates a second job. The same key with another request is refused
 * (422 IdempotencyKeyReused). The client library sends a fresh key with each of those calls.
 */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
/**
 * Where Companion's create (POST /s3/multipart) also takes the key: Uppy's file meta, which it sends
 * as `metadata` (its Companion requests carry no headers of the app's).
 */
export const IDEMPOTENCY_KEY_METADATA_FIELD = 'idempotencyKey';
/** The answer's header that says it repeats an earlier request's job. */
export const IDEMPOTENT_REPLAYED_HEADER = 'Idempotent-Replayed';
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
/** Visible ASCII but the double quote (a UUID, a ULID, a hash…); the draft's quoted form `"…"` is accepted too. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21\x23-\x7e]{1,255}$/;

/** The key in a header's value (quotes of the draft's sf-string form removed), or undefined if malformed. */
export function parseIdempotencyKey(value: string): string | undefined {
  const key = /^"(.*)"$/.exec(value)?.[1] ?? value;
  return IDEMPOTENCY_KEY_PATTERN.test(key) ? key : undefined;
}
