#!/usr/bin/env node
/**
 * file-jobs: the command-line client of the file-jobs service, built on client/ (see cli/README.md).
 * Every failure prints one line, `error: …`, and exits non-zero: 1 for errors, 2 for bad usage, 130
 * when interrupted. Set FILE_JOBS_DEBUG=1 to see stack traces.
 */
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  DEFAULT_CHECKSUM_ALGORITHM,
  JOB_STATUSES,
  JOB_TYPES,
} from '../client/index.ts';
import pkg from '../package.json' with { type: 'json' };
import { downloadJob } from './commands/download.ts';
import { exportFile } from './commands/export.ts';
import { files } from './commands/files.ts';
import { jobs, showJob } from './commands/jobs.ts';
import { kill } from './commands/kill.ts';
import { login } from './commands/login.ts';
import { logout } from './commands/logout.ts';
import { upload } from './commands/upload.ts';
import { Context, type GlobalOptions } from './context.ts';
import { CliError, describeError, Interrupted } from './errors.ts';

const VERSION: string = pkg.version;

function numberIn(what: string, min: number, max: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (
      value.trim() === '' ||
      !Number.isFinite(n) ||
      (integer && !Number.isInteger(n)) ||
      n < min ||
      n > max
    ) {
      throw new InvalidArgumentError(
        `${what} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`,
      );
    }
    return n;
  };
}

function checksumAlgorithm(value: string): ChecksumAlgorithm {
  const upper = value.trim().toUpperCase();
  const found = CHECKSUM_ALGORITHMS.find((algorithm) => algorithm === upper);
  if (!found) throw new InvalidArgumentError(`it is one of ${CHECKSUM_ALGORITHMS.join(', ')}`);
  return found;
}

/** The context of the command being run, for error messages. */
let running: { ctx?: Context; command?: string } = {};

function action<A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<void> | void) {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    running = { command: command.name() };
    const ctx = new Context(command.optsWithGlobals<GlobalOptions>(), VERSION);
    running.ctx = ctx;
    await fn(ctx, ...(args.slice(0, -1) as A));
  };
}

export function buildProgram(): Command {
  const program = new Command('file-jobs')
    .description('Upload files of any size to the file-jobs service, export them, and manage the jobs.')
    .version(VERSION, '-V, --version')
    .option(
      '--api <url>',
      'API URL (default: $FILE_JOBS_API_URL, else apiUrl in ./.local/stack.json, else http://127.0.0.1:3000)',
    )
    .option('--json', 'machine output: one JSON object per line on stdout')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`${text.trim().replace(/\s*\n\s*/g, ' ')}\n`) });

  program
    .command('login')
    .description(
      'sign in and store the token for this API URL (password from a hidden prompt, or from standard input when it is not a terminal)',
    )
    .argument('[username]', 'asked for when not given')
    .action(action((ctx, username: string | undefined) => login(ctx, username)));

  program
    .command('logout')
    .description('end the stored sign-in on the service (its token is refused from then on) and forget it')
    .action(action((ctx) => logout(ctx)));

  program
    .command('upload')
    .description(
      'upload a file with parallel parts and a progress bar; an unfinished upload of the same file is resumed',
    )
    .argument('<file>', 'the file to upload')
    .option('--name <name>', "its name in your uploads folder (default: the file's name)")
    .option(
      '--part-size <MiB>',
      'part size in MiB, 5 to 5120 (default: the service picks, 8 MiB)',
      numberIn('--part-size', 5, 5120, false),
    )
    .option('-c, --concurrency <n>', 'parts in flight at once', numberIn('--concurrency', 1, 64, true), 4)
    .option('--overwrite', 'replace a file of that name in your uploads folder')
    .option(
      '--keep',
      'on Ctrl-C, keep the unfinished upload on the server, to resume by running the same command again',
    )
    .option('--no-resume', 'abort an unfinished upload of this name and start over, instead of resuming it')
    .option(
      '--max-rate <MiB/s>',
      'limit the upload bandwidth',
      numberIn('--max-rate', 0.01, 1_000_000, false),
    )
    .option(
      '--checksum-algorithm <alg>',
      `S3 checksum of each part and of the whole file: ${CHECKSUM_ALGORITHMS.join(', ')} (default: ${DEFAULT_CHECKSUM_ALGORITHM}; a resumed upload keeps its own)`,
      checksumAlgorithm,
    )
    .option('--no-checksum', 'upload without S3 checksums')
    .action(action((ctx, file: string, options: Parameters<typeof upload>[2]) => upload(ctx, file, options)));

  program
    .command('export')
    .description(
      'export an uploaded file (a copy, or gzip-compressed) with progress, and optionally download it',
    )
    .argument('<name>', 'a file in your uploads folder')
    .option('--gzip', 'compress the export with gzip')
    .option('--download <path>', 'download the export to this file (or into this directory) when it is done')
    .option('--keep', 'on Ctrl-C, let the export run on instead of cancelling it')
    .action(
      action((ctx, name: string, options: Parameters<typeof exportFile>[2]) =>
        exportFile(ctx, name, options),
      ),
    );

  program
    .command('download')
    .description(
      "download a finished export, checked against the export's checksum; a download that stopped (Ctrl-C, a crash) goes on from where it was",
    )
    .argument('<jobId>', 'the export job')
    .argument('<path>', 'the file to write (or a directory to write into)')
    .option(
      '--max-rate <MiB/s>',
      'limit the download bandwidth',
      numberIn('--max-rate', 0.01, 1_000_000, false),
    )
    .action(
      action((ctx, jobId: string, path: string, options: { maxRate?: number }) =>
        downloadJob(ctx, jobId, path, options),
      ),
    );

  program
    .command('kill')
    .description('abort your uploads in flight, or cancel your running exports (all of them, or one job)')
    .addArgument(
      new Argument('<what>', '"upload" or "export"').choices(['upload', 'uploads', 'export', 'exports']),
    )
    .argument('[jobId]', 'only this job')
    .action(action((ctx, what: string, jobId: string | undefined) => kill(ctx, what, jobId)));

  program
    .command('jobs')
    .description('list your jobs, newest first')
    .addOption(new Option('--type <type>', 'only uploads or only exports').choices(JOB_TYPES))
    .addOption(new Option('--status <status>', 'only jobs in this state').choices(JOB_STATUSES))
    .option('--limit <n>', 'how many (1 to 100)', numberIn('--limit', 1, 100, true), 20)
    .option('--all', 'every job, page after page')
    .action(action((ctx, options: Parameters<typeof jobs>[1]) => jobs(ctx, options)));

  program
    .command('job')
    .description('show one job')
    .argument('<jobId>')
    .option('--reconcile', 'for an upload, ask S3 which parts it holds')
    .action(
      action((ctx, jobId: string, options: { reconcile?: boolean }) =>
        showJob(ctx, jobId, options.reconcile === true),
      ),
    );

  program
    .command('files')
    .description('list your uploads folder')
    .action(action((ctx) => files(ctx)));

  return program;
}

function report(error: unknown): number {
  if (error instanceof CommanderError) {
    // Commander printed its own one-line message (or the help, or the version).
    return error.exitCode === 0 ? 0 : 2;
  }
  if (process.env.FILE_JOBS_DEBUG && error instanceof Error && error.stack)
    process.stderr.write(`${error.stack}\n`);
  const ctx = running.ctx;
  const line = describeError(error, {
    ...(ctx ? { apiUrl: ctx.api.url, apiSource: ctx.api.source } : {}),
    ...(running.command ? { command: running.command } : {}),
  });
  process.stderr.write(error instanceof Interrupted ? `${line}\n` : `error: ${line}\n`);
  return error instanceof CliError ? error.exitCode : 1;
}

function exit(code: number): void {
  // Let what was written reach the pipe, then end (no stray handle may keep a finished command alive).
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

async function main(argv: string[]): Promise<void> {
  process.on('uncaughtException', (error) => exit(report(error)));
  process.on('unhandledRejection', (error) => exit(report(error)));
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    // `file-jobs jobs | head -1`: the reader left; nothing more to say.
    if (error.code === 'EPIPE') process.exit(0);
  });
  try {
    await buildProgram().parseAsync(argv);
    exit(0);
  } catch (error) {
    exit(report(error));
  }
}

await main(process.argv);
