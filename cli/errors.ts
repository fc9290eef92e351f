import {
  AbortedError,
  ApiError,
  ErrorCode,
  FileJobsError,
  JobFailedError,
  NetworkError,
} from '../client/index.ts';

/** An error the CLI reports as `error: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Bad command-line input (exit code 2, like commander's own usage errors). */
export class UsageError extends CliError {
  override name = 'UsageError';

  constructor(message: string) {
    super(message, 2);
  }
}

export const EXIT_INTERRUPTED = 130;
/** `kill` found nothing running: not a failure of the command, but scripts can tell it apart. */
export const EXIT_NOTHING_TO_KILL = 3;
/**
 * Bytes did not match their checksum: a download whose bytes are not the export's (nothing is
 * written), or an upload whose completion S3 refused. Apart from other failures (1): retrying the
 * same way will not help when the stored object itself changed.
 */
export const EXIT_CHECKSUM_MISMATCH = 4;

/** Ctrl-C ended the command; the message says what became of its job (printed as is, exit code 130). */
export class Interrupted extends CliError {
  override name = 'Interrupted';

  constructor(message: string) {
    super(message, EXIT_INTERRUPTED);
  }
}

export interface ErrorContext {
  apiUrl?: string;
  /** Where the API URL came from (`--api`, `.local/stack.json`, ...). */
  apiSource?: string;
  command?: string;
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();

/** A hint the service's error codes call for, on the CLI's terms. */
function hint(error: ApiError, context: ErrorContext): string {
  if (error.status === 401 && context.command !== 'login') return ': run "file-jobs login"';
  switch (error.code) {
    case ErrorCode.FileExists:
      return '; pass --overwrite to replace it';
    case ErrorCode.FileNotFound:
      return ' ("file-jobs files" lists them)';
    case ErrorCode.TooManyRequests:
      return error.retryAfterSeconds ? ` (try again in ${error.retryAfterSeconds} s)` : '';
    default:
      return '';
  }
}

/** Any error as the one line the CLI prints after `error: `. Never a stack trace. */
export function describeError(error: unknown, context: ErrorContext = {}): string {
  if (error instanceof CliError) return oneLine(error.message);
  if (error instanceof ApiError) {
    // The service's messages already end in a clause of their own ("...; sign in again").
    let message = error.message;
    const extra = hint(error, context);
    // Hints that replace the service's own last clause ("...; send "overwrite": true to replace it").
    if (extra.startsWith(':') || extra.startsWith(';')) message = message.replace(/;[^;]*$/, '');
    return oneLine(`${message}${extra}`);
  }
  if (error instanceof NetworkError) {
    const where =
      context.apiSource === 'the default'
        ? ' (or pass --api)'
        : context.apiSource
          ? ` (the API URL comes from ${context.apiSource})`
          : '';
    const running =
      error.reason === 'ECONNREFUSED' && context.apiUrl && error.url.startsWith(context.apiUrl)
        ? `; is the service running? ("npm start")${where}`
        : '';
    return oneLine(`${error.message}${running}`);
  }
  if (error instanceof JobFailedError || error instanceof AbortedError || error instanceof FileJobsError) {
    return oneLine(error.message);
  }
  if (error instanceof Error) return oneLine(error.message || error.name);
  return oneLine(String(error));
}
