import * as z from '../schema.ts';

/**
 * Usernames become S3 key prefixes (`uploads/<username>/`), so they are held to a small, safe
 * alphabet: lower-case letters, digits, `.`, `_`, `-`; starting and ending with a letter or digit;
 * no `..`; 2 to 64 characters.
 */
export const USERNAME_PATTERN = /^(?!.*\.\.)[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])$/;

export const usernameSchema = z
  .string()
  .check(
    z.regex(
      USERNAME_PATTERN,
      'a username is 2-64 of a-z 0-9 . _ -, starting and ending with a letter or digit',
    ),
  );

export const isValidUsername = (name: string) => USERNAME_PATTERN.test(name);
