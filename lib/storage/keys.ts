import * as z from '../schema.ts';

/**
 * The bucket's layout: `uploads/<username>/<filename>` and `exports/<username>/<jobId>/<file>`.
 * Names are validated before they become keys, so no key can leave its user's prefix.
 */

export const MAX_FILENAME_BYTES = 255;

// What JavaScript's trim() removes (and ECMAScript's \s matches), spelled out so that every regex
// engine reading the OpenAPI document (a fuzzer's included) agrees on it.
const WHITESPACE = String.raw`[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]`;

// The rules' parts. No path separators and no control characters (so no key can leave its user's
// prefix), not "." and no "..", no whitespace at either end.
const ALLOWED_CHARACTER = String.raw`[^/\\\u0000-\u001f\u007f]`;
const NO_DOTS = String.raw`(?!\.$)(?![\s\S]*\.\.)`;
const NO_EDGE_WHITESPACE = String.raw`(?!${WHITESPACE})(?![\s\S]*${WHITESPACE}$)`;

/**
 * The file-name rules, once: each a regular expression a name must match (ECMAScript with the `u`
 * flag, which is also JSON Schema's `pattern` dialect) and the message a name that does not gets.
 * filenameProblem checks them one by one; FILENAME_JSON_SCHEMA states them all in one `pattern` in
 * the OpenAPI document, so clients and fuzzers learn them before any 400.
 */
const FILENAME_RULES = [
  {
    pattern: `^${ALLOWED_CHARACTER}*$`,
    message: 'a filename must not contain "/", "\\" or control characters',
  },
  { pattern: `^${NO_DOTS}`, message: 'a filename must not contain ".."' },
  { pattern: `^${NO_EDGE_WHITESPACE}`, message: 'a filename must not start or end with whitespace' },
].map((rule) => ({ ...rule, regex: new RegExp(rule.pattern, 'u') }));

// With the `u` flag a class of surrogates matches only unpaired ones (a pair is one code point). An
// unpaired surrogate cannot be encoded into a key (a 500 once). It stays out of the document's
// pattern, which most validators could not even read (Rust's regex refuses surrogates, and
// schemathesis then drops the whole pattern), and is stated in words there.
const UNPAIRED_SURROGATE = /[\ud800-\udfff]/u;

/** Every rule in one pattern (and not empty): what the OpenAPI document states. */
const FILENAME_PATTERN = `^${NO_DOTS}${NO_EDGE_WHITESPACE}${ALLOWED_CHARACTER}+$`;

export function filenameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a filename must not be empty';
  if (Buffer.byteLength(name, 'utf8') > MAX_FILENAME_BYTES)
    return `a filename is at most ${MAX_FILENAME_BYTES} bytes`;
  if (UNPAIRED_SURROGATE.test(name)) return 'a filename must be well-formed Unicode (no unpaired surrogate)';
  for (const rule of FILENAME_RULES) if (!rule.regex.test(name)) return rule.message;
  if (name.normalize('NFC') !== name) return 'a filename must be in Unicode NFC form';
  return undefined;
}

/**
 * The rules as JSON Schema, for the OpenAPI document (a refinement in code is invisible to
 * z.toJSONSchema). Three rules are stated in words only: the limit counts UTF-8 bytes (maxLength
 * counts characters, so it is only an upper bound), names are well-formed Unicode, and in NFC.
 */
export const FILENAME_JSON_SCHEMA = {
  type: 'string',
  minLength: 1,
  maxLength: MAX_FILENAME_BYTES,
  pattern: FILENAME_PATTERN,
  description: `A file name: at most ${MAX_FILENAME_BYTES} bytes of UTF-8, well-formed Unicode in NFC form; no "/", "\\" or control characters, no "..", no leading or trailing whitespace.`,
};

const filenameRules = z.refine<string>((name) => filenameProblem(name) === undefined, {
  error: (issue) =>
    (typeof issue.input === 'string' ? filenameProblem(issue.input) : undefined) ?? 'invalid filename',
});

export const filenameSchema = z.string().check(filenameRules);

/**
 * A filename taken from a file the person picked in a browser (Uppy's `file.name`), not one typed
 * for this API. macOS hands some names over decomposed (NFD: "e" followed by a combining accent),
 * which filenameSchema refuses so that two names that look the same are never two files. Here the
 * name is composed (NFC) first and then checked by the same rules: the file is stored under the name
 * anyone else would type for it, and a Mac user's upload is not refused for a name they cannot see.
 */
export const pickedFilenameSchema = z.string().check(
  z.overwrite((name) => name.normalize('NFC')),
  filenameRules,
);

/** FILENAME_JSON_SCHEMA for a picked filename: decomposed names are composed, not refused. */
export const PICKED_FILENAME_JSON_SCHEMA = {
  ...FILENAME_JSON_SCHEMA,
  description: FILENAME_JSON_SCHEMA.description.replace(
    'in NFC form',
    'composed to NFC by the server when it is not (a name picked on macOS may come decomposed)',
  ),
};

export const uploadsPrefix = (username: string) => `uploads/${username}/`;
export const uploadKey = (username: string, filename: string) => `${uploadsPrefix(username)}${filename}`;
export const exportsPrefix = (username: string, jobId: string) => `exports/${username}/${jobId}/`;
