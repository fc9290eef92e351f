import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  AbortedError,
  ApiError,
  downloadName,
  type ExportJob,
  FileJobsClient,
  FileJobsError,
  fileSource,
  type Job,
  type JobStatus,
  type JobType,
  MiB,
  type UploadResult,
} from '../client/index.ts';
import {
  type ApiChoice,
  forgetUploads,
  readUploads,
  rememberUpload,
  removeSession,
  resolveApiUrl,
  resolveToken,
  saveSession,
} from './config.ts';
import { CliError, EXIT_INTERRUPTED, EXIT_NOTHING_TO_KILL, Interrupted, UsageError } from './errors.ts';
import { formatBytes, formatDuration, formatRate, percent, table } from './format.ts';
import { withInterrupts } from './interrupt.ts';
import { Output } from './output.ts';
import { ask, askHidden, closeStdin, readStdinLine } from './prompt.ts';

export interface GlobalOptions {
  api?: string;
  json?: boolean;
}

/** What every command needs: where the API is, how to print, a client. */
export class Context {
  readonly out: Output;
  readonly api: ApiChoice;
  readonly userAgent: string;

  constructor(globals: GlobalOptions, version: string) {
    this.out = new Output(globals.json === true);
    this.api = resolveApiUrl(globals.api);
    let url: URL | undefined;
    try {
      url = new URL(this.api.url);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new UsageError(
        `the API URL "${this.api.url}" (from ${this.api.source}) is not a URL; it starts with http:// or https://`,
      );
    }
    this.userAgent = `file-jobs-cli/${version}`;
    // Found without being told (no --api, no FILE_JOBS_API_URL): say where, so that a wrong guess shows.
    if (this.api.source === 'the default')
      this.out.note(
        `note: using ${this.api.url}, the default (no --api, FILE_JOBS_API_URL or .local/stack.json in ${process.cwd()})`,
      );
    else if (this.api.source === '.local/stack.json')
      this.out.note(`note: using ${this.api.url}, from ${join(process.cwd(), '.local', 'stack.json')}`);
  }

  client(signedIn = true): FileJobsClient {
    return new FileJobsClient({
      apiUrl: this.api.url,
      token: signedIn ? resolveToken(this.api.url) : undefined,
      userAgent: this.userAgent,
    });
  }
}

/** An interruption, reported on stderr (and as a JSON event) with exit code 130. */
function interrupted(ctx: Context, error: AbortedError): never {
  ctx.out.event({ event: 'interrupted', jobId: error.jobId ?? null, outcome: error.outcome });
  // A kill that failed leaves a job behind: that is an error.
  if (error.outcome === 'kill-failed') throw new CliError(error.message, EXIT_INTERRUPTED);
  throw new Interrupted(error.message);
}

const seconds = (ms: number) => Math.round(ms) / 1000;
const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;

// --- login / logout ------------------------------------------------------------------------------

export async function login(ctx: Context, usernameArg: string | undefined): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  let username = usernameArg;
  let password: string;
  try {
    if (!username)
      username = (interactive ? await ask('username: ') : await readStdinLine('username')).trim();
    password = interactive ? await askHidden('password: ') : await readStdinLine('password');
  } finally {
    if (!interactive) closeStdin();
  }
  if (!username) throw new UsageError('a username is needed');
  if (!password) throw new UsageError('a password is needed');
  const client = ctx.client(false);
  const result = await client.signIn(username, password);
  const expiresAt = new Date(Date.now() + result.expiresIn * 1000).toISOString();
  const file = saveSession(ctx.api.url, { username, token: result.token, expiresAt });
  ctx.out.event({ event: 'login', apiUrl: ctx.api.url, username, expiresAt, configFile: file });
  ctx.out.line(
    `signed in to ${ctx.api.url} (from ${ctx.api.source}) as ${username}; the token is valid for ${formatDuration(result.expiresIn)} (saved in ${file})`,
  );
}

export function logout(ctx: Context): void {
  const removed = removeSession(ctx.api.url);
  ctx.out.event({ event: 'logout', apiUrl: ctx.api.url, removed });
  ctx.out.line(removed ? `signed out of ${ctx.api.url}` : `not signed in to ${ctx.api.url}`);
}

// --- upload --------------------------------------------------------------------------------------

export interface UploadFlags {
  name?: string;
  partSize?: number;
  concurrency: number;
  overwrite?: boolean;
  keep?: boolean;
  resume: boolean;
  maxRate?: number;
}

/**
 * Decides what to do with an unfinished upload of the same name: resume it when it is this very
 * file (same size and, when this machine started it, same modification time), start over when the
 * file changed since, and refuse when it is another file (unless --no-resume).
 */
async function unfinishedUpload(
  ctx: Context,
  client: FileJobsClient,
  name: string,
  file: { path: string; size: number; mtimeMs: number },
  flags: UploadFlags,
): Promise<string | undefined> {
  const unfinished = await client.findUnfinishedUpload(name);
  if (!unfinished) return undefined;
  const record = readUploads().uploads[unfinished.jobId];
  const sameFile =
    unfinished.size === file.size &&
    (!record || (record.size === file.size && record.mtimeMs === file.mtimeMs));
  let reason: string;
  if (!flags.resume) {
    reason = 'as --no-resume asks';
  } else if (sameFile) {
    return unfinished.jobId;
  } else if (unfinished.size === file.size) {
    reason = `because ${file.path} changed since it began`;
  } else {
    throw new CliError(
      `${name} is already being uploaded by job ${unfinished.jobId} (${formatBytes(unfinished.size)}; this file is ${formatBytes(file.size)}): pass --no-resume to abort that upload and start over, or --name to upload under another name`,
    );
  }
  await client.abortUpload(unfinished.jobId);
  forgetUploads([unfinished.jobId]);
  ctx.out.event({ event: 'aborted-unfinished', jobId: unfinished.jobId });
  ctx.out.line(`aborted the unfinished upload job ${unfinished.jobId} of ${name} ${reason}; starting over`);
  return undefined;
}

export async function upload(ctx: Context, path: string, flags: UploadFlags): Promise<void> {
  const client = ctx.client();
  const source = await fileSource(path);
  const name = flags.name ?? basename(path);
  const absolute = resolve(path);
  const { mtimeMs } = await stat(absolute);
  const file = { path, size: source.size, mtimeMs };
  let jobId: string | undefined;
  let result: UploadResult;
  try {
    const resume = await unfinishedUpload(ctx, client, name, file, flags);
    const bar = { current: undefined as ReturnType<Output['bar']> };
    result = await withInterrupts(
      (signal) =>
        client.upload({
          source,
          filename: name,
          concurrency: flags.concurrency,
          ...(flags.partSize ? { partSize: Math.round(flags.partSize * MiB) } : {}),
          ...(flags.overwrite ? { overwrite: true } : {}),
          ...(flags.maxRate ? { maxBytesPerSecond: flags.maxRate * MiB } : {}),
          resume: resume ?? false,
          keepOnAbort: flags.keep === true,
          signal,
          onStart: (start) => {
            jobId = start.jobId;
            rememberUpload({
              apiUrl: ctx.api.url,
              jobId: start.jobId,
              path: absolute,
              filename: name,
              size: start.size,
              mtimeMs,
              startedAt: new Date().toISOString(),
            });
            ctx.out.event({ event: 'started', ...start });
            const resumed = start.resumed
              ? `; resuming: ${plural(start.partsOnServer, 'part')} already on the server, ${start.partsToSend} to send`
              : '';
            ctx.out.line(
              `upload job ${start.jobId} started: ${name}, ${formatBytes(start.size)} (${start.size} bytes) in ${start.partCount} parts of ${formatBytes(start.partSize)}${resumed}`,
            );
            bar.current = ctx.out.bar('upload  ', start.size, start.bytesOnServer);
          },
          onProgress: (progress) => {
            bar.current?.update(
              progress.bytesSent,
              progress.bytesTotal,
              progress.bytesPerSecond,
              progress.etaSeconds,
            );
            if (progress.kind !== 'part') return;
            ctx.out.event({
              event: 'part',
              jobId: progress.jobId,
              partNumber: progress.partNumber,
              partsDone: progress.partsDone,
              partCount: progress.partCount,
              partsSent: progress.partsSent,
              bytesDone: progress.bytesDone,
              bytesTotal: progress.bytesTotal,
              bytesPerSecond:
                progress.bytesPerSecond === undefined ? null : Math.round(progress.bytesPerSecond),
            });
            if (!ctx.out.tty) {
              ctx.out.line(
                `part ${progress.partNumber} sent: ${progress.partsDone}/${progress.partCount} parts, ${formatBytes(progress.bytesDone)} of ${formatBytes(progress.bytesTotal)} (${percent(progress.bytesDone, progress.bytesTotal)}), ${formatRate(progress.bytesPerSecond)}`,
              );
            }
          },
          onWarning: (message) => ctx.out.note(`warning: ${message}`),
        }),
      () => {
        ctx.out.stopBar();
        ctx.out.note(
          flags.keep
            ? 'interrupted: stopping; the upload stays on the server (Ctrl-C again to quit at once)'
            : 'interrupted: aborting the upload on the server (Ctrl-C again to quit at once)',
        );
      },
    );
    ctx.out.stopBar();
  } catch (error) {
    ctx.out.stopBar();
    if (error instanceof AbortedError) {
      if (error.outcome === 'killed' && error.jobId) forgetUploads([error.jobId]);
      if (error.outcome === 'kept') {
        throw interrupted(
          ctx,
          new AbortedError(`${error.message} by running the same command again`, {
            jobId: error.jobId,
            outcome: error.outcome,
          }),
        );
      }
      if (error.outcome === 'kill-failed' && error.jobId) {
        throw interrupted(
          ctx,
          new AbortedError(`${error.message}; "file-jobs kill upload ${error.jobId}" aborts it`, {
            jobId: error.jobId,
            outcome: error.outcome,
          }),
        );
      }
      throw interrupted(ctx, error);
    }
    const gone =
      error instanceof FileJobsError && (error.code === 'UploadGone' || error.code === 'JobNotActive');
    if (jobId && gone) forgetUploads([jobId]);
    if (jobId && !gone) {
      throw new CliError(
        `${(error as Error).message} (upload job ${jobId} stays on the server: run the same command again to resume it, or "file-jobs kill upload ${jobId}")`,
      );
    }
    throw error;
  } finally {
    await source.close().catch(() => {});
  }
  forgetUploads([result.jobId]);
  const rate =
    result.elapsedMs > 0 ? (result.partsSent * result.partSize) / (result.elapsedMs / 1000) : undefined;
  ctx.out.event({
    event: 'completed',
    jobId: result.jobId,
    filename: result.filename,
    size: result.size,
    partSize: result.partSize,
    partCount: result.partCount,
    resumed: result.resumed,
    partsSent: result.partsSent,
    partsReused: result.partsReused,
    retries: result.retries,
    progressReports: result.progressReports,
    seconds: seconds(result.elapsedMs),
    status: result.job.status,
  });
  ctx.out.line(
    `upload job ${result.jobId} ${result.job.status}: ${result.filename}, ${formatBytes(result.size)} in ${formatDuration(result.elapsedMs / 1000)} (${formatRate(rate)}); ${plural(result.partsSent, 'part')} sent, ${result.partsReused} already on the server`,
  );
}

// --- export and download ---------------------------------------------------------------------------

async function download(ctx: Context, client: FileJobsClient, job: ExportJob | string, path: string) {
  let bar: ReturnType<Output['bar']>;
  const result = await withInterrupts(
    (signal) =>
      client.downloadToFile(job, path, {
        signal,
        onProgress: (progress) => {
          if (progress.bytesTotal !== undefined) {
            bar ??= ctx.out.bar('download', progress.bytesTotal);
            bar?.update(
              progress.bytesDone,
              progress.bytesTotal,
              progress.bytesPerSecond,
              progress.etaSeconds,
            );
          }
        },
      }),
    () => {
      ctx.out.stopBar();
      ctx.out.note('interrupted: stopping the download');
    },
  ).catch((error: unknown) => {
    ctx.out.stopBar();
    if (error instanceof AbortedError) {
      const jobId = typeof job === 'string' ? job : job.jobId;
      throw interrupted(
        ctx,
        new AbortedError(
          `download stopped, nothing written; export job ${jobId} is still there: "file-jobs download ${jobId} ${path}" fetches it`,
          { jobId, outcome: 'kept' },
        ),
      );
    }
    throw error;
  });
  ctx.out.stopBar();
  ctx.out.event({ event: 'downloaded', jobId: result.job.jobId, path: result.path, bytes: result.bytes });
  ctx.out.line(
    `downloaded ${downloadName(result.job)} to ${result.path} (${formatBytes(result.bytes)}, ${result.bytes} bytes)`,
  );
}

export interface ExportFlags {
  gzip?: boolean;
  download?: string;
  keep?: boolean;
}

export async function exportFile(ctx: Context, name: string, flags: ExportFlags): Promise<void> {
  const client = ctx.client();
  const format = flags.gzip ? 'gzip' : 'raw';
  let bar: ReturnType<Output['bar']>;
  let last = '';
  const job = await withInterrupts(
    (signal) =>
      client.exportFile(name, {
        format,
        signal,
        keepOnAbort: flags.keep === true,
        onStart: (started) => {
          ctx.out.event({
            event: 'started',
            jobId: started.jobId,
            filename: name,
            format,
            size: started.size,
          });
          ctx.out.line(
            `export job ${started.jobId} started: ${name} (${format}, ${formatBytes(started.size)})`,
          );
          bar = ctx.out.bar('export  ', started.size);
        },
        onProgress: (progress) => {
          bar?.update(progress.bytesDone, progress.bytesTotal, progress.bytesPerSecond, progress.etaSeconds);
          const key = `${progress.status} ${progress.partsDone}`;
          if (key === last || progress.status === 'SUCCEEDED') return;
          last = key;
          ctx.out.event({ event: 'progress', ...progress, bytesPerSecond: progress.bytesPerSecond ?? null });
          if (!ctx.out.tty) {
            ctx.out.line(
              `export job ${progress.jobId} ${progress.status}: ${formatBytes(progress.bytesDone)} of ${formatBytes(progress.bytesTotal)} (${percent(progress.bytesDone, progress.bytesTotal)}), ${progress.partsDone}/${progress.partCount} parts`,
            );
          }
        },
      }),
    () => {
      ctx.out.stopBar();
      ctx.out.note(
        flags.keep
          ? 'interrupted: stopping; the export keeps running on the server (Ctrl-C again to quit at once)'
          : 'interrupted: cancelling the export on the server (Ctrl-C again to quit at once)',
      );
    },
  ).catch((error: unknown) => {
    ctx.out.stopBar();
    if (error instanceof AbortedError) throw interrupted(ctx, error);
    throw error;
  });
  ctx.out.stopBar();
  ctx.out.event({
    event: 'succeeded',
    jobId: job.jobId,
    filename: job.filename,
    format: job.format,
    outputSize: job.outputSize ?? null,
    downloadUrl: job.downloadUrl,
    expiresAt: job.expiresAt,
  });
  ctx.out.line(
    `export job ${job.jobId} SUCCEEDED: ${downloadName(job)}, ${formatBytes(job.outputSize ?? 0)}${flags.download ? '' : `; download URL (valid until ${job.expiresAt}): ${job.downloadUrl}`}`,
  );
  if (flags.download) await download(ctx, client, job, flags.download);
}

export async function downloadJob(ctx: Context, jobId: string, path: string): Promise<void> {
  const client = ctx.client();
  await download(ctx, client, jobId, path);
}

// --- kill ----------------------------------------------------------------------------------------

/** The service's 404 for a kill with nothing running, as exit code 3 (EXIT_NOTHING_TO_KILL); others as they are. */
const nothingToKill =
  (code: string) =>
  (error: unknown): never => {
    if (error instanceof ApiError && error.code === code)
      throw new CliError(error.message, EXIT_NOTHING_TO_KILL);
    throw error;
  };

export async function kill(ctx: Context, what: string, jobId: string | undefined): Promise<void> {
  const client = ctx.client();
  const kind = what.replace(/s$/, '');
  if (kind === 'upload') {
    if (jobId) {
      const job = await client.abortUpload(jobId);
      forgetUploads([jobId]);
      ctx.out.event({ event: 'aborted', aborted: [{ jobId, filename: job.filename }] });
      ctx.out.line(`aborted upload job ${jobId} (${job.filename}): ${job.status}`);
      return;
    }
    const { aborted } = await client.killUploads().catch(nothingToKill('NoUploadFound'));
    forgetUploads(aborted.map((job) => job.jobId));
    ctx.out.event({ event: 'aborted', aborted });
    ctx.out.line(
      `aborted ${aborted.length} upload${aborted.length === 1 ? '' : 's'}: ${aborted.map((job) => `job ${job.jobId} (${job.filename})`).join(', ')}`,
    );
    return;
  }
  if (kind === 'export') {
    if (jobId) {
      const job = await client.cancelExport(jobId);
      ctx.out.event({
        event: 'cancelled',
        cancelled: [{ jobId, filename: job.filename, status: job.status }],
      });
      ctx.out.line(`cancelled export job ${jobId} (${job.filename}): ${job.status}`);
      return;
    }
    const { cancelled } = await client.killExports().catch(nothingToKill('NoExportFound'));
    ctx.out.event({ event: 'cancelled', cancelled });
    ctx.out.line(
      `cancelled ${cancelled.length} export${cancelled.length === 1 ? '' : 's'}: ${cancelled.map((job) => `job ${job.jobId} (${job.filename})`).join(', ')}`,
    );
    return;
  }
  throw new UsageError(`kill what? "upload" or "export", not "${what}"`);
}

// --- jobs and files ------------------------------------------------------------------------------

export interface JobsFlags {
  type?: JobType;
  status?: JobStatus;
  limit: number;
  all?: boolean;
}

const progressOf = (job: Job) =>
  `${job.progress.partsDone}/${job.progress.partCount} (${percent(job.progress.bytesDone, job.progress.bytesTotal)})`;

export async function jobs(ctx: Context, flags: JobsFlags): Promise<void> {
  const client = ctx.client();
  const query = {
    ...(flags.type ? { type: flags.type } : {}),
    ...(flags.status ? { status: flags.status } : {}),
    limit: Math.min(flags.limit, 100),
  };
  const list: Job[] = [];
  let nextCursor: string | undefined;
  if (flags.all) {
    for await (const job of client.jobs(query)) list.push(job);
  } else {
    const page = await client.listJobs(query);
    list.push(...page.jobs);
    nextCursor = page.nextCursor;
  }
  if (ctx.out.json) {
    ctx.out.event({ jobs: list, ...(nextCursor ? { nextCursor } : {}) });
    return;
  }
  if (ctx.out.tty) {
    if (list.length === 0) {
      ctx.out.line('no jobs');
      return;
    }
    ctx.out.line(
      table(
        ['JOB', 'TYPE', 'STATUS', 'PARTS', 'SIZE', 'CREATED', 'FILE'],
        list.map((job) => [
          job.jobId,
          job.type,
          job.status,
          progressOf(job),
          formatBytes(job.size),
          job.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
          job.filename,
        ]),
      ),
    );
    if (nextCursor) ctx.out.line(`(more: --all lists every job)`);
    return;
  }
  // Not a terminal: one tab-separated line per job.
  for (const job of list) {
    ctx.out.line(
      [
        job.jobId,
        job.type,
        job.status,
        job.progress.partsDone,
        job.progress.partCount,
        job.size,
        job.createdAt,
        job.filename,
      ].join('\t'),
    );
  }
}

export async function showJob(ctx: Context, jobId: string, reconcile: boolean): Promise<void> {
  const client = ctx.client();
  const answer = reconcile ? await client.reconcileUpload(jobId) : { job: await client.getJob(jobId) };
  if (ctx.out.json) {
    ctx.out.event(answer as unknown as Record<string, unknown>);
    return;
  }
  const { job } = answer;
  const rows: [string, string][] = [
    ['job', job.jobId],
    ['type', job.type],
    ['status', job.status],
    ['file', job.filename],
    ['size', `${formatBytes(job.size)} (${job.size} bytes)`],
    ['parts', `${progressOf(job)} of ${formatBytes(job.partSize)}`],
    ['created', job.createdAt],
    ['updated', job.updatedAt],
  ];
  if (job.finishedAt) rows.push(['finished', job.finishedAt]);
  if (job.error) rows.push(['error', job.error]);
  const exportJob = job as ExportJob;
  if (exportJob.format) rows.push(['format', exportJob.format]);
  if (exportJob.outputSize !== undefined)
    rows.push(['output', `${formatBytes(exportJob.outputSize)} (${exportJob.outputSize} bytes)`]);
  if (exportJob.downloadUrl)
    rows.push(['download', `${exportJob.downloadUrl} (until ${exportJob.expiresAt})`]);
  if ('missingParts' in answer && answer.missingParts) {
    rows.push(
      ['on S3', `${answer.uploadedParts?.length ?? 0} parts`],
      ['missing', `${answer.missingParts.length} parts`],
    );
  }
  for (const [key, value] of rows) ctx.out.line(`${`${key}:`.padEnd(10)}${value}`);
}

export async function files(ctx: Context): Promise<void> {
  const client = ctx.client();
  const list = await client.listFiles();
  if (ctx.out.json) {
    ctx.out.event({ files: list });
    return;
  }
  if (ctx.out.tty) {
    ctx.out.line(
      list.length === 0
        ? 'no files'
        : table(
            ['NAME', 'SIZE', 'MODIFIED'],
            list.map((file) => [file.name, formatBytes(file.size), file.lastModified]),
          ),
    );
    return;
  }
  for (const file of list) ctx.out.line([file.name, file.size, file.lastModified].join('\t'));
}
