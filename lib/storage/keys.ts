import * as z from '../schema.ts';

/**
 * The bucket's layout: `uploads/<username>/<filename>` and `exports/<username>/<jobId>/<file>`.
 * Names are validated before they become keys, so no key can leave its user's prefix.
 */

// No path separators, no `..`, no control characters, no leading/trailing spaces or dots-only names.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const FORBIDDEN = /[/\\\u0000-\u001f\u007f]/;

export const MAX_FILENAME_BYTES = 255;

export function filenameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a filename must not be empty';
  if (Buffer.byteLength(name, 'utf8') > MAX_FILENAME_BYTES)
    return `a filename is at most ${MAX_FILENAME_BYTES} bytes`;
  if (FORBIDDEN.test(name)) return 'a filename must not contain "/", "\\" or control characters';
  if (name === '.' || name === '..' || name.includes('..')) return 'a filename must not contain ".."';
  if (name.trim() !== name) return 'a filename must not start or end with whitespace';
  if (name.normalize('NFC') !== name) return 'a filename must be in Unicode NFC form';
  return undefined;
}

export const filenameSchema = z.string().check(
  z.refine((name) => filenameProblem(name) === undefined, {
    error: (issue) =>
      (typeof issue.input === 'string' ? filenameProblem(issue.input) : undefined) ?? 'invalid filename',
  }),
);

export const uploadsPrefix = (username: string) => `uploads/${username}/`;
export const uploadKey = (username: string, filename: string) => `${uploadsPrefix(username)}${filename}`;
export const exportsPrefix = (username: string, jobId: string) => `exports/${username}/${jobId}/`;
