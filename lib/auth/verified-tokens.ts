/**
 * Tokens this container has already verified. A client sends the same token with every request until
 * it expires, and checking its signature again each time costs more than the rest of a route's own
 * code: jose's EdDSA check takes about 0.2 ms on a full core and goes through a WebCrypto job on
 * libuv's thread pool, where a token seen before takes 3.5 µs (bench/signin.ts); a 512 MB function
 * has under a third of a core.
 *
 * What keeps this as strict as verifying every time:
 * - The key is the token's exact text, signature included: a token that differs in any character,
 *   however it was made, is verified in full. Only tokens that passed verification are kept.
 * - An entry counts only for the keys that verified it (the same `KeyRing` object, which is replaced
 *   whenever the keys are read again: at most JWT_KEYS_MAX_AGE_SECONDS apart, and at once for an
 *   unknown kid). A token verified with a new ring empties the cache, so retiring a key refuses its
 *   tokens within the same bound as before.
 * - An entry ends at the token's `exp`. Past it the token is verified again, so it gets jose's own
 *   answer (accepted within its clock tolerance, then "expired").
 * - The same for the verification settings (issuer, audience).
 * Revocation is not decided here: the caller still checks the user's token version on every request.
 *
 * At most `maxEntries` tokens are kept, the oldest let go first, so memory stays bounded (a token and
 * its claims are well under 1 KiB) whatever a client sends.
 */
export class VerifiedTokens<Claims extends { exp: number }> {
  private readonly entries = new Map<string, { claims: Claims; keys: object; settings: object }>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: { maxEntries: number; now?: () => number }) {
    this.maxEntries = options.maxEntries;
    this.now = options.now ?? Date.now;
  }

  /**
   * The claims of `token` as `verify` found them when these same `keys` and `settings` verified it,
   * or, if they have not (or it has expired since), what `verify` answers now. A failure is not kept.
   * So the answer is always the one `verify` would give with the keys the caller holds, even when
   * calls that read the keys before and after a rotation interleave.
   */
  async verify(
    token: string,
    keys: object,
    settings: object,
    verify: () => Promise<Claims>,
  ): Promise<Claims> {
    const known = this.entries.get(token);
    if (known && known.keys === keys && known.settings === settings && this.now() < known.claims.exp * 1000) {
      return known.claims;
    }
    this.entries.delete(token);
    const claims = Object.freeze(await verify());
    // All entries share their keys and settings (see below), so one tells them: tokens verified by
    // other keys (the ones before a rotation, as a rule) are of no more use. Let them all go.
    const kept = this.entries.values().next().value;
    if (kept && (kept.keys !== keys || kept.settings !== settings)) this.entries.clear();
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { claims, keys, settings });
    return claims;
  }

  get size(): number {
    return this.entries.size;
  }
}
