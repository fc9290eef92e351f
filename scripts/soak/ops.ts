import { createHash } from 'node:crypto';
import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import {
  AbortedError,
  ApiError,
  type ClientOptions,
  type ExportJob,
  FileJobsClient,
  FileJobsError,
  JobFailedError,
  MiB,
} from '../../client/index.ts';
import { type JobStatus, TERMINAL_STATUSES } from '../../common/statuses.ts';
import type { ExportRecord, OpKind, SessionRecord, StoredFile, UploadRecord } from './model.ts';
import { type Prng, seededBytes } from './prng.ts';
import type { Recorder } from './recorder.ts';

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

const PART = 5 * MiB;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One signed-in user; its lanes share its client (and so its token, renewed as it runs short) and the
 * list of files it has in its uploads folder.
 */
export interface SoakUser {
  username: string;
  password: string;
  client: FileJobsClient;
  files: StoredFile[];
}

export interface OpContext {
  user: SoakUser;
  rng: Prng;
  recorder: Recorder;
  apiUrl: string;
  /** Unique per op across the run: names files, so no upload overwrites another's. */
  opId: string;
  uploads: UploadRecord[];
  exports: ExportRecord[];
  /** Longest wait for one export to end inside an op. */
  exportWaitMs: number;
  sessions: SessionRecord[];
  /** How long after a sign-out every container refuses its tokens (AUTH_USER_CACHE_SECONDS). */
  signOutWindowMs: number;
}

/** A client as the soak's users have them: every exchange through the recorder. */
export function soakClient(
  apiUrl: string,
  recorder: Recorder,
  options: Pick<ClientOptions, 'renewToken' | 'onTokenRenewed'> = {},
): FileJobsClient {
  return new FileJobsClient({
    apiUrl,
    fetch: recorder.fetch,
    // Retries hide faults from the caller; the recorder still sees every attempt's status.
    retry: { retries: 4, baseDelayMs: 100, maxDelayMs: 2000 },
    requestTimeoutMs: 28_000,
    userAgent: 'file-jobs-soak',
    ...options,
  });
}

/** An error as a short outcome label: the API's code, the client's code, or the error's name. */
export function outcomeOf(error: unknown): string {
  if (error instanceof ApiError) return `${error.status} ${error.code}`;
  if (error instanceof AbortedError) return `aborted (${error.outcome})`;
  if (error instanceof JobFailedError) return error.job.status;
  if (error instanceof FileJobsError) return error.code;
  return (error as Error)?.name ?? String(error);
}

type SizeClass = 'tiny' | 'small' | 'one-part' | 'multi' | 'multi-odd';

/** Sizes that cross the interesting lines: a few bytes, under one part, exactly one, several. */
function pickSize(rng: Prng, weights: Record<SizeClass, number>): number {
  switch (rng.weighted(weights)) {
    case 'tiny':
      return rng.int(1, 4096);
    case 'small':
      return rng.int(4097, PART - 1);
    case 'one-part':
      return PART;
    case 'multi':
      return 12 * MiB;
    case 'multi-odd':
      return 2 * PART + rng.int(1, 1000);
  }
}

function newUploadRecord(
  ctx: OpContext,
  size: number,
  filename = `${ctx.opId}.bin`,
): { record: UploadRecord; bytes: Buffer } {
  const bytes = seededBytes(ctx.rng.word(), size);
  const record: UploadRecord = {
    kind: 'upload',
    op: ctx.opId,
    username: ctx.user.username,
    filename,
    key: `uploads/${ctx.user.username}/${filename}`,
    size,
    sha256: sha256(bytes),
    completedAck: false,
    killAck: false,
    steps: [],
  };
  ctx.uploads.push(record);
  return { record, bytes };
}

function stored(ctx: OpContext, record: UploadRecord) {
  ctx.user.files.push({ filename: record.filename, size: record.size, sha256: record.sha256 });
}

/** A plain upload through the client library, to completion (unless another lane's kill hits it). */
async function plainUpload(ctx: OpContext): Promise<string> {
  const size = pickSize(ctx.rng, { tiny: 3, small: 3, 'one-part': 1, multi: 3, 'multi-odd': 1 });
  const { record, bytes } = newUploadRecord(ctx, size);
  try {
    const result = await ctx.user.client.upload({
      source: bytes,
      filename: record.filename,
      ...(size > PART ? { partSize: PART } : {}),
      concurrency: ctx.rng.int(1, 3),
      onStart: (start) => {
        record.jobId = start.jobId;
      },
    });
    record.steps.push(`client: ${result.job.status}`);
    if (result.job.status === 'COMPLETED') {
      record.completedAck = true;
      stored(ctx, record);
      return 'completed';
    }
    return `resolved ${result.job.status}`;
  } catch (error) {
    record.steps.push(`client: ${outcomeOf(error)}`);
    return outcomeOf(error);
  }
}

type Interruption = 'kill' | 'abort' | 'signal' | 'crash';

/**
 * An upload interrupted at a random point of its bytes (often inside a part, as the bytes are paced):
 * DELETE /upload/kill, DELETE /upload/{id}, the caller's AbortSignal (the client aborts the job), or
 * a "crash" (the client stops and leaves the job for the janitor). A point past 100% fires after the
 * upload finished, where the interruption must change nothing.
 */
async function interruptedUpload(ctx: OpContext, how: Interruption, fraction?: number): Promise<string> {
  const { rng, user } = ctx;
  const size = pickSize(rng, { tiny: 1, small: 2, 'one-part': 1, multi: 5, 'multi-odd': 2 });
  const { record, bytes } = newUploadRecord(ctx, size);
  const at = fraction ?? rng.next() * 1.15;
  const rate = rng.int(3, 12) * MiB;
  const controller = new AbortController();
  let fired: Promise<void> | undefined;
  const fire = () => {
    if (fired) return;
    const jobId = record.jobId;
    record.steps.push(`${how} at ${Math.round(at * 100)}%`);
    fired = (async () => {
      try {
        if (how === 'kill') {
          const { aborted } = await user.client.killUploads();
          if (aborted.some((job) => job.jobId === jobId)) record.killAck = true;
          record.steps.push(`kill answered: ${aborted.map((job) => job.jobId).join(',') || 'none'}`);
        } else if (how === 'abort' && jobId) {
          const job = await user.client.abortUpload(jobId);
          if (job.status === 'ABORTED') record.killAck = true;
          record.steps.push(`abort answered: ${job.status}`);
        } else {
          controller.abort();
        }
      } catch (error) {
        record.steps.push(`${how} answered: ${outcomeOf(error)}`);
      }
    })();
  };
  let outcome: string;
  try {
    const result = await user.client.upload({
      source: bytes,
      filename: record.filename,
      ...(size > PART ? { partSize: PART } : {}),
      concurrency: rng.int(1, 3),
      maxBytesPerSecond: rate,
      progressIntervalMs: 10,
      signal: controller.signal,
      keepOnAbort: how === 'crash',
      onStart: (start) => {
        record.jobId = start.jobId;
        if (at === 0) fire();
      },
      onProgress: (progress) => {
        if (progress.bytesSent >= at * progress.bytesTotal) fire();
      },
    });
    record.steps.push(`client: ${result.job.status}`);
    if (result.job.status === 'COMPLETED') {
      record.completedAck = true;
      stored(ctx, record);
    }
    outcome = `completed${fired ? ' (interruption lost the race)' : ''}`;
    // Past the end: interrupt a finished upload, which must leave the file as it is.
    if (!fired && (how === 'kill' || how === 'abort')) fire();
  } catch (error) {
    record.steps.push(`client: ${outcomeOf(error)}`);
    if (error instanceof AbortedError && error.outcome === 'killed') record.killAck = true;
    outcome = outcomeOf(error);
  }
  await fired;
  return outcome;
}

/** PUTs one part to its presigned URL; the ETag, or undefined when S3 refused it. */
/** One part PUT to its presigned URL: its ETag, or undefined when S3 refused it or the connection broke. */
async function putPart(ctx: OpContext, url: string, body: Uint8Array): Promise<string | undefined> {
  try {
    const response = await ctx.recorder.fetch(url, {
      method: 'PUT',
      headers: { 'content-length': String(body.byteLength) },
      body: body as Uint8Array<ArrayBuffer>,
    });
    await response.text();
    return response.ok ? (response.headers.get('etag') ?? undefined) : undefined;
  } catch {
    // A fault on the way to S3 (the recorder counted it): the part is missing, and the completion
    // that follows has to say so.
    return undefined;
  }
}

/**
 * Every part in S3, then two requests at the same instant: complete with abort, kill or a second
 * complete. Exactly one of complete and abort may win, and S3 must end as the winner says.
 */
async function completeRace(ctx: OpContext): Promise<string> {
  const { rng, user } = ctx;
  const size = pickSize(rng, { tiny: 2, small: 2, 'one-part': 1, multi: 4, 'multi-odd': 1 });
  const { record, bytes } = newUploadRecord(ctx, size);
  const rival = rng.pick(['abort', 'kill', 'complete'] as const);
  try {
    const created = await user.client.createUpload({
      filename: record.filename,
      size,
      ...(size > PART ? { partSize: PART } : {}),
    });
    record.jobId = created.job.jobId;
    const parts = await Promise.all(
      created.parts.map(async ({ partNumber, url }) => {
        const start = (partNumber - 1) * created.partSize;
        const body = bytes.subarray(start, Math.min(size, start + created.partSize));
        return { partNumber, etag: await putPart(ctx, url, body), size: body.byteLength };
      }),
    );
    if (rng.chance(0.5)) {
      const finished = parts.flatMap((part) => (part.etag ? [{ ...part, etag: part.etag }] : []));
      if (finished.length > 0) await user.client.reportProgress(created.job.jobId, finished);
    }
    const jobId = created.job.jobId;
    record.steps.push(`parts sent; complete races ${rival}`);
    const [completed, other] = await Promise.allSettled([
      user.client.completeUpload(jobId),
      rival === 'abort'
        ? user.client.abortUpload(jobId)
        : rival === 'kill'
          ? user.client.killUploads()
          : user.client.completeUpload(jobId),
    ]);
    const describe = (result: PromiseSettledResult<unknown>) =>
      result.status === 'rejected'
        ? outcomeOf(result.reason)
        : ((result.value as { status?: string }).status ??
          `aborted ${(result.value as { aborted: { jobId: string }[] }).aborted.map((job) => job.jobId).join(',')}`);
    record.steps.push(`complete: ${describe(completed)}; ${rival}: ${describe(other)}`);
    if (completed.status === 'fulfilled' && completed.value.status === 'COMPLETED')
      record.completedAck = true;
    if (other.status === 'fulfilled') {
      const value = other.value as { status?: string; aborted?: { jobId: string }[] };
      if (rival === 'complete' && value.status === 'COMPLETED') record.completedAck = true;
      if (rival === 'abort' && value.status === 'ABORTED') record.killAck = true;
      if (rival === 'kill' && value.aborted?.some((job) => job.jobId === jobId)) record.killAck = true;
    }
    if (record.completedAck) stored(ctx, record);
    return record.completedAck ? `complete won over ${rival}` : `${rival} won`;
  } catch (error) {
    record.steps.push(`failed: ${outcomeOf(error)}`);
    return outcomeOf(error);
  }
}

/**
 * The seed's form upload (small files, 0 bytes included; the JSON flow starts at 1 byte). A 0-byte
 * file is first offered to the client library, which must refuse it without a request.
 */
async function formUpload(ctx: OpContext): Promise<string> {
  const { rng, user } = ctx;
  const size = rng.chance(0.5) ? 0 : rng.int(1, 64 * 1024);
  const { record, bytes } = newUploadRecord(ctx, size);
  if (size === 0) {
    try {
      await user.client.upload({ source: bytes, filename: record.filename });
      record.steps.push('client library accepted 0 bytes');
    } catch (error) {
      record.steps.push(`client library: ${outcomeOf(error)}`);
    }
  }
  const form = new FormData();
  form.append('file', new Blob([bytes]), record.filename);
  const label = `form ${size === 0 ? '0 bytes' : 'small'}`;
  let response: Response;
  try {
    response = await ctx.recorder.fetch(`${ctx.apiUrl}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await user.client.accessToken()}` },
      body: form,
    });
  } catch {
    // The API was unreachable (the recorder counted it): whatever the job became is the checks' to judge.
    record.steps.push('form: no answer (network error)');
    return `${label}: network error`;
  }
  const body = (await response.json().catch(() => undefined)) as
    | { job?: { jobId: string; status: string }; error?: { code: string } }
    | undefined;
  if (body?.job) record.jobId = body.job.jobId;
  record.steps.push(`form: ${response.status} ${body?.job?.status ?? body?.error?.code ?? ''}`);
  if (response.status === 201 && body?.job?.status === 'COMPLETED') {
    ctx.recorder.bytesUp += size;
    record.completedAck = true;
    stored(ctx, record);
    return `${label}: completed`;
  }
  return `${label}: ${response.status} ${body?.error?.code ?? ''}`.trim();
}

const POLL_MS = 250;
const OUTAGE_POLL_MS = 5000;

/** Polls GET /jobs/{id} until the job ends or `ms` pass; the last status seen. */
async function waitForEnd(ctx: OpContext, jobId: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let status = 'unknown';
  // Every 250 ms while the API answers; while it does not (a crash), less and less often, up to 5 s
  // apart: each poll is retried by the client, and thousands of them only add noise to the report.
  let pause = POLL_MS;
  while (Date.now() < deadline) {
    try {
      status = (await ctx.user.client.getJob(jobId)).status;
      pause = POLL_MS;
    } catch (error) {
      status = outcomeOf(error);
      pause = Math.min(pause * 2, OUTAGE_POLL_MS);
    }
    if (TERMINAL_STATUSES.has(status as JobStatus)) return status;
    await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
  }
  return `still ${status}`;
}

type ExportEnd = 'wait' | 'cancel' | 'kill';

function newExportRecord(ctx: OpContext, file: StoredFile, format: 'raw' | 'gzip'): ExportRecord {
  const record: ExportRecord = {
    kind: 'export',
    op: ctx.opId,
    username: ctx.user.username,
    filename: file.filename,
    format,
    sourceSha256: file.sha256,
    sourceSize: file.size,
    cancelAck: false,
    steps: [],
  };
  ctx.exports.push(record);
  return record;
}

/**
 * An export of one of the user's files (raw or gzip), left to finish, or cancelled with
 * DELETE /export/{id} or POST /export/kill after a random delay, often while it runs.
 */
async function exportOp(ctx: OpContext, end: ExportEnd): Promise<string> {
  const { rng, user } = ctx;
  if (user.files.length === 0) return plainUpload(ctx).then((outcome) => `no file yet; upload ${outcome}`);
  const file = rng.pick(user.files);
  const format = rng.chance(0.5) ? 'gzip' : 'raw';
  const record = newExportRecord(ctx, file, format);
  let job: ExportJob;
  try {
    job = await user.client.startExport(file.filename, format);
  } catch (error) {
    record.steps.push(`start: ${outcomeOf(error)}`);
    return `${format} start: ${outcomeOf(error)}`;
  }
  record.jobId = job.jobId;
  record.steps.push(`started ${format} of ${file.size} bytes`);
  if (end !== 'wait') {
    const delay = rng.chance(0.15) ? 0 : rng.int(0, 3000);
    await sleep(delay);
    record.steps.push(`${end} after ${delay} ms`);
    await (end === 'cancel' ? cancelOne(ctx, record) : killAll(ctx, [record]));
  }
  const status = await waitForEnd(ctx, job.jobId, ctx.exportWaitMs);
  record.steps.push(`seen ${status}`);
  return `${format} ${status}${record.cancelAck ? ' (cancel acknowledged)' : ''}`;
}

/** DELETE /export/{id}; notes on the record whether the service acknowledged the cancel. */
async function cancelOne(ctx: OpContext, record: ExportRecord): Promise<void> {
  try {
    const cancelled = await ctx.user.client.cancelExport(record.jobId!);
    if (cancelled.status === 'CANCELLING' || cancelled.status === 'CANCELLED') record.cancelAck = true;
    record.steps.push(`cancel answered: ${cancelled.status}`);
  } catch (error) {
    record.steps.push(`cancel answered: ${outcomeOf(error)}`);
  }
}

/** POST /export/kill; notes on each record whether the kill named its job. */
async function killAll(ctx: OpContext, records: ExportRecord[]): Promise<void> {
  try {
    const { cancelled } = await ctx.user.client.killExports();
    const named = cancelled.map((one) => `${one.jobId} ${one.status}`).join(', ');
    for (const record of records) {
      if (cancelled.some((one) => one.jobId === record.jobId)) record.cancelAck = true;
      record.steps.push(`kill answered: ${named}`);
    }
  } catch (error) {
    for (const record of records) record.steps.push(`kill answered: ${outcomeOf(error)}`);
  }
}

/**
 * Several requests on one user at the same instant, where transactions on the same items (the
 * running-exports counter, active slots, one job) conflict: 4 exports started at once (one over the
 * limit of 3), then a kill, a second kill and a cancel of each, all at once.
 */
async function exportBurst(ctx: OpContext): Promise<string> {
  const { rng, user } = ctx;
  if (user.files.length === 0) return plainUpload(ctx).then((outcome) => `no file yet; upload ${outcome}`);
  const records = Array.from({ length: 4 }, () =>
    newExportRecord(ctx, rng.pick(user.files), rng.chance(0.5) ? 'gzip' : 'raw'),
  );
  const starts = await Promise.all(
    records.map(async (record) => {
      try {
        const job = await user.client.startExport(record.filename, record.format);
        record.jobId = job.jobId;
        record.steps.push(`burst: started ${record.format} of ${record.sourceSize} bytes`);
        return 'started';
      } catch (error) {
        record.steps.push(`burst start: ${outcomeOf(error)}`);
        return outcomeOf(error);
      }
    }),
  );
  const started = records.filter((record) => record.jobId);
  const delay = rng.int(0, 1500);
  await sleep(delay);
  for (const record of started) record.steps.push(`kill x2 and cancel at once after ${delay} ms`);
  await Promise.all([
    killAll(ctx, started),
    killAll(ctx, started),
    ...started.map((record) => cancelOne(ctx, record)),
  ]);
  const ends = await Promise.all(started.map((record) => waitForEnd(ctx, record.jobId!, ctx.exportWaitMs)));
  for (const [index, record] of started.entries()) record.steps.push(`seen ${ends[index]}`);
  const tally = (items: string[]) => {
    const counts = new Map<string, number>();
    for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
    return [...counts.entries()]
      .map(([item, count]) => `${count} ${item}`)
      .sort()
      .join(', ');
  };
  return `starts: ${tally(starts)}; ends: ${tally(ends)}`;
}

/**
 * Three clients upload different bytes under one name at the same instant: one wins the name (the
 * others get 409), and a kill may land mid-way. The object must be the winner's bytes.
 */
async function uploadBurst(ctx: OpContext): Promise<string> {
  const { rng, user } = ctx;
  const size = pickSize(rng, { tiny: 2, small: 2, 'one-part': 1, multi: 3, 'multi-odd': 1 });
  const filename = `${ctx.opId}.bin`;
  const kill = rng.chance(0.4) ? rng.int(0, 1500) : undefined;
  const attempts = Array.from({ length: 3 }, () => newUploadRecord(ctx, size, filename));
  const killer =
    kill === undefined
      ? undefined
      : sleep(kill).then(async () => {
          try {
            const { aborted } = await user.client.killUploads();
            for (const { record } of attempts) {
              if (aborted.some((job) => job.jobId === record.jobId)) record.killAck = true;
              record.steps.push(
                `kill after ${kill} ms answered: ${aborted.map((job) => job.jobId).join(',')}`,
              );
            }
          } catch (error) {
            for (const { record } of attempts)
              record.steps.push(`kill after ${kill} ms: ${outcomeOf(error)}`);
          }
        });
  const outcomes = await Promise.all(
    attempts.map(async ({ record, bytes }) => {
      try {
        const result = await user.client.upload({
          source: bytes,
          filename,
          ...(size > PART ? { partSize: PART } : {}),
          maxBytesPerSecond: 8 * MiB,
          onStart: (start) => {
            record.jobId = start.jobId;
          },
        });
        record.steps.push(`client: ${result.job.status}`);
        if (result.job.status === 'COMPLETED') {
          record.completedAck = true;
          stored(ctx, record);
        }
        return 'completed';
      } catch (error) {
        record.steps.push(`client: ${outcomeOf(error)}`);
        return outcomeOf(error);
      }
    }),
  );
  await killer;
  return outcomes.sort().join(' | ');
}

/** An answer of the Companion routes, or `network-error` when none came. */
interface CompanionBody {
  uploadId?: string;
  key?: string;
  url?: string;
  error?: { code?: string };
}
type CompanionAnswer =
  | { status: number; body?: CompanionBody }
  | { status: 'network-error'; body?: undefined };

/**
 * One call as an app makes it with plain fetch (Uppy's to the Companion routes, as `@uppy/aws-s3` 6
 * makes them: JSON, the README snippet's Bearer token; the user's current one unless `token` says),
 * tried again after a network error or a 5xx as long as `tries` lasts: Uppy's user pressing retry,
 * spread over about 30 s so that a crashed API is back (the crash soak's restarts take 12-22 s).
 */
async function plainCall(
  ctx: OpContext,
  method: string,
  path: string,
  body?: unknown,
  { tries = 10, token }: { tries?: number; token?: string } = {},
): Promise<CompanionAnswer> {
  let answer: CompanionAnswer = { status: 'network-error' };
  for (let attempt = 0; attempt < tries; attempt++) {
    if (attempt > 0) await sleep(Math.min(4000, 500 * 2 ** (attempt - 1)));
    try {
      const response = await ctx.recorder.fetch(`${ctx.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token ?? (await ctx.user.client.accessToken())}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      answer = {
        status: response.status,
        body: (await response.json().catch(() => undefined)) as CompanionBody | undefined,
      };
    } catch {
      answer = { status: 'network-error' };
    }
    if (answer.status !== 'network-error' && answer.status < 500) return answer;
  }
  return answer;
}

const answered = (answer: CompanionAnswer) =>
  `${answer.status}${answer.body?.error?.code ? ` ${answer.body.error.code}` : ''}`;

/**
 * An upload as Uppy makes it through the Companion routes (`POST /s3/multipart` with the README
 * snippet's `metadata.idempotencyKey`, one part URL at a time, 5 MiB chunks, complete), with Uppy's
 * retries after faults; sometimes paused and resumed through the list-parts route, sometimes
 * cancelled (DELETE /s3/multipart/{uploadId}). Its file name is its own, so a retried create that
 * meets 409 UploadInProgress means the key did not find the upload the lost create had opened.
 */
async function uppyUpload(ctx: OpContext): Promise<string> {
  const { rng } = ctx;
  const size = pickSize(rng, { tiny: 2, small: 2, 'one-part': 1, multi: 3, 'multi-odd': 1 });
  const { record, bytes } = newUploadRecord(ctx, size);
  const partCount = Math.max(1, Math.ceil(size / PART));
  // Paused after this many parts and resumed (a file of several parts only).
  const resumeAfter = partCount > 1 && rng.chance(0.4) ? rng.int(1, partCount - 1) : undefined;
  const cancelAfter = rng.chance(0.2) ? rng.int(0, partCount) : undefined;
  const created = await plainCall(ctx, 'POST', '/s3/multipart', {
    filename: record.filename,
    type: 'application/octet-stream',
    metadata: {
      name: record.filename,
      type: 'application/octet-stream',
      idempotencyKey: `${ctx.opId}-${rng.word()}`,
    },
  });
  record.steps.push(`uppy create: ${answered(created)}`);
  if (created.status !== 200) {
    if (created.status === 409 && created.body?.error?.code === 'UploadInProgress') record.keyRefused = true;
    return `create ${answered(created)}`;
  }
  const { uploadId, key } = created.body as { uploadId: string; key: string };
  record.jobId = uploadId;
  const where = `${encodeURIComponent(uploadId)}?${new URLSearchParams({ key })}`;
  const cancel = async () => {
    const aborted = await plainCall(ctx, 'DELETE', `/s3/multipart/${where}`);
    if (aborted.status === 200) record.killAck = true;
    record.steps.push(`uppy cancel: ${answered(aborted)}`);
    return `cancelled: ${answered(aborted)}`;
  };
  const etags = new Map<number, string>();
  for (let partNumber = 1; partNumber <= partCount; partNumber++) {
    if (partNumber - 1 === cancelAfter) return cancel();
    if (partNumber - 1 === resumeAfter) {
      // Paused and resumed: Uppy asks which parts S3 holds and sends only the others.
      const listed = await plainCall(ctx, 'GET', `/s3/multipart/${where}`);
      record.steps.push(`uppy resume: list ${answered(listed)}`);
      if (listed.status !== 200) return `resume: ${answered(listed)}`;
      for (const part of listed.body as unknown as { PartNumber: number; ETag: string }[])
        etags.set(part.PartNumber, part.ETag);
    }
    if (etags.has(partNumber)) continue;
    const body = bytes.subarray((partNumber - 1) * PART, Math.min(size, partNumber * PART));
    for (let attempt = 0; attempt < 3 && !etags.has(partNumber); attempt++) {
      const signed = await plainCall(
        ctx,
        'GET',
        `/s3/multipart/${encodeURIComponent(uploadId)}/${partNumber}?${new URLSearchParams({ key })}`,
      );
      if (signed.status !== 200) {
        record.steps.push(`uppy sign part ${partNumber}: ${answered(signed)}`);
        return `sign: ${answered(signed)}`;
      }
      const etag = await putPart(ctx, String(signed.body?.url), body);
      if (etag) etags.set(partNumber, etag);
    }
    if (!etags.has(partNumber)) {
      record.steps.push(`uppy part ${partNumber}: not sent`);
      return `part ${partNumber} not sent`;
    }
  }
  if (cancelAfter === partCount) return cancel();
  const parts = [...etags].map(([PartNumber, ETag]) => ({ PartNumber, ETag }));
  const completed = await plainCall(
    ctx,
    'POST',
    `/s3/multipart/${encodeURIComponent(uploadId)}/complete?${new URLSearchParams({ key })}`,
    { parts },
  );
  record.steps.push(`uppy complete: ${answered(completed)}`);
  if (completed.status !== 200) return `complete: ${answered(completed)}`;
  record.completedAck = true;
  stored(ctx, record);
  return `completed${resumeAfter === undefined ? '' : ' (resumed)'}`;
}

/** A small first file for a user (one part, a few KiB to 2 MiB), uploaded through the client. */
export async function seedFile(ctx: OpContext): Promise<string> {
  const size = ctx.rng.int(1, 2 * MiB);
  const { record, bytes } = newUploadRecord(ctx, size);
  try {
    const result = await ctx.user.client.upload({
      source: bytes,
      filename: record.filename,
      onStart: (start) => {
        record.jobId = start.jobId;
      },
    });
    record.steps.push(`client: ${result.job.status}`);
    if (result.job.status !== 'COMPLETED') return `resolved ${result.job.status}`;
    record.completedAck = true;
    stored(ctx, record);
    return 'completed';
  } catch (error) {
    record.steps.push(`client: ${outcomeOf(error)}`);
    return outcomeOf(error);
  }
}

/**
 * For the janitor, after the other operations (whose kills would otherwise end it first): an upload
 * that stops partway and is never heard of again, and a multipart upload that no job records (a
 * crash between opening it in S3 and writing the job), made straight in S3.
 */
export async function janitorBait(ctx: OpContext, s3: S3Client, bucket: string): Promise<string[]> {
  const crashed = await interruptedUpload(ctx, 'crash', 0.3 + ctx.rng.next() * 0.5);
  const key = `uploads/${ctx.user.username}/${ctx.opId}-orphan.bin`;
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  await s3.send(
    new UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      PartNumber: 1,
      Body: seededBytes(ctx.rng.word(), 1024),
    }),
  );
  return [`crash: ${crashed}`, `orphan ${key} ${UploadId}`];
}

/**
 * A second sign-in of the user beside the one its lanes use: renewed one to three times, used, then
 * signed out. Once every container must have learned of the sign-out (its token-state cache has
 * run out), each token of that sign-in must be refused; the lanes' own sign-in goes on meanwhile
 * (the recorder holds any 401 to one of its live tokens against the service).
 */
async function signInAndOut(ctx: OpContext): Promise<string> {
  const { user, recorder } = ctx;
  const record: SessionRecord = {
    kind: 'session',
    op: ctx.opId,
    username: user.username,
    tokens: [],
    signedOut: false,
    acceptedAfterSignOut: [],
    steps: [],
  };
  ctx.sessions.push(record);
  const keep = (token: string) => {
    record.tokens.push(token);
    recorder.owners.set(token, user.username);
  };
  const client = soakClient(ctx.apiUrl, recorder, { renewToken: false });
  try {
    keep((await client.signIn(user.username, user.password)).token);
  } catch (error) {
    return `sign-in ${outcomeOf(error)}`;
  }
  const renewals = ctx.rng.int(1, 3);
  for (let n = 1; n <= renewals; n++) {
    try {
      keep((await client.renewToken()).token);
    } catch (error) {
      record.steps.push(`renewal ${n}: ${outcomeOf(error)}`);
      break;
    }
  }
  const renewed = `renewed ${record.tokens.length - 1}/${renewals}`;
  try {
    await client.listJobs({ limit: 1 });
  } catch (error) {
    record.steps.push(`jobs with the newest token: ${outcomeOf(error)}`);
  }
  // From here on a 401 to these tokens is what is asked for, not a fault.
  recorder.endTokens(record.tokens);
  try {
    await client.signOut();
  } catch (error) {
    record.steps.push(`sign-out: ${outcomeOf(error)}`);
    return `${renewed}; sign-out ${outcomeOf(error)}`;
  }
  record.signedOut = true;
  record.steps.push(`signed out at ${new Date().toISOString()}`);
  await sleep(ctx.signOutWindowMs);
  for (const [index, token] of record.tokens.entries()) {
    const answer = await plainCall(ctx, 'GET', '/jobs?limit=1', undefined, { token });
    if (answer.status === 401) continue;
    record.steps.push(`token ${index} after the sign-out: ${answered(answer)}`);
    // No answer, or only 5xx (the API down throughout), proves nothing either way.
    if (typeof answer.status === 'number' && answer.status < 500) {
      record.acceptedAfterSignOut.push({ token: index, status: answer.status });
    }
  }
  return `${renewed}; signed out; ${record.acceptedAfterSignOut.length > 0 ? 'a token still accepted' : 'every token refused'}`;
}

export const OP_WEIGHTS: Record<OpKind, number> = {
  upload: 24,
  'upload-kill': 9,
  'upload-abort': 9,
  'upload-signal': 5,
  'upload-crash': 4,
  'complete-race': 9,
  'form-upload': 5,
  'upload-burst': 5,
  'uppy-upload': 8,
  export: 16,
  'export-cancel': 10,
  'export-kill': 9,
  'export-burst': 5,
  session: 3,
};

export function runOp(kind: OpKind, ctx: OpContext): Promise<string> {
  switch (kind) {
    case 'upload':
      return plainUpload(ctx);
    case 'upload-kill':
      return interruptedUpload(ctx, 'kill');
    case 'upload-abort':
      return interruptedUpload(ctx, 'abort');
    case 'upload-signal':
      return interruptedUpload(ctx, 'signal');
    case 'upload-crash':
      return interruptedUpload(ctx, 'crash');
    case 'complete-race':
      return completeRace(ctx);
    case 'form-upload':
      return formUpload(ctx);
    case 'upload-burst':
      return uploadBurst(ctx);
    case 'uppy-upload':
      return uppyUpload(ctx);
    case 'export-burst':
      return exportBurst(ctx);
    case 'export':
      return exportOp(ctx, 'wait');
    case 'export-cancel':
      return exportOp(ctx, 'cancel');
    case 'export-kill':
      return exportOp(ctx, 'kill');
    case 'session':
      return signInAndOut(ctx);
  }
}
