import { gunzipSync } from 'node:zlib';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type MultipartUpload,
  S3Client,
} from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, paginateQuery } from '@aws-sdk/lib-dynamodb';
import { TERMINAL_STATUSES } from '../../common/statuses.ts';
import type { ExportRecord, SessionRecord, UploadRecord, Violation } from './model.ts';
import type { SoakUser } from './ops.ts';
import { sha256 } from './ops.ts';
import { isDependencyUnavailable, type Recorder } from './recorder.ts';

/** Above this share of API answers, dependency 503s are a finding (a stall, not a blip). */
const MAX_DEPENDENCY_UNAVAILABLE_SHARE = 0.01;

export interface Emulators {
  region: string;
  s3Endpoint: string;
  dynamodbEndpoint: string;
  bucket: string;
  jobsTable: string;
}

/** A job item as the jobs table holds it (only the fields the checks read). */
export interface StoredJob {
  jobId: string;
  type: 'upload' | 'export';
  status: string;
  key: string;
  filename: string;
  uploadId?: string;
  updatedAt: string;
  leaseUntil?: number;
  error?: string;
  createdAt: string;
  partsDone?: number;
  size?: number;
  details?: { format?: string };
}

export const TERMINAL: ReadonlySet<string> = TERMINAL_STATUSES;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

/**
 * Direct access to the emulators, apart from the service's own code, so that the checks see what S3
 * and DynamoDB really hold rather than what the service says they hold.
 */
export class Outside {
  readonly s3: S3Client;
  readonly db: DynamoDBDocumentClient;
  private readonly raw: DynamoDBClient;
  readonly target: Emulators;

  constructor(target: Emulators) {
    this.target = target;
    this.s3 = new S3Client({
      region: target.region,
      endpoint: target.s3Endpoint,
      forcePathStyle: true,
      credentials,
    });
    this.raw = new DynamoDBClient({ region: target.region, endpoint: target.dynamodbEndpoint, credentials });
    this.db = DynamoDBDocumentClient.from(this.raw);
  }

  close() {
    this.s3.destroy();
    this.raw.destroy();
  }

  /** Every item of a user's partition: jobs (JOB#), active slots (ACTIVE#), running counters (RUNNING#). */
  async partition(username: string): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.target.jobsTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `USER#${username}` },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) items.push(...(page.Items ?? []));
    return items;
  }

  async jobs(username: string): Promise<StoredJob[]> {
    return (await this.partition(username))
      .filter((item) => String(item.sk).startsWith('JOB#'))
      .map((item) => item as unknown as StoredJob);
  }

  async openUploads(prefix: string): Promise<MultipartUpload[]> {
    const uploads: MultipartUpload[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.s3.send(
        new ListMultipartUploadsCommand({
          Bucket: this.target.bucket,
          Prefix: prefix,
          KeyMarker,
          UploadIdMarker,
        }),
      );
      uploads.push(...(page.Uploads ?? []));
      [KeyMarker, UploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [];
    } while (KeyMarker);
    return uploads;
  }

  async objects(prefix: string): Promise<{ key: string; size: number }[]> {
    const objects: { key: string; size: number }[] = [];
    let ContinuationToken: string | undefined;
    do {
      const page = await this.s3.send(
        new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ContinuationToken }),
      );
      for (const object of page.Contents ?? []) objects.push({ key: object.Key!, size: object.Size ?? 0 });
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return objects;
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: key }));
      return true;
    } catch (error) {
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
        return false;
      throw error;
    }
  }

  async bytes(key: string): Promise<Buffer | undefined> {
    try {
      const object = await this.s3.send(new GetObjectCommand({ Bucket: this.target.bucket, Key: key }));
      return Buffer.from(await object.Body!.transformToByteArray());
    } catch (error) {
      if ((error as Error).name === 'NoSuchKey') return undefined;
      throw error;
    }
  }
}

export interface CheckInput {
  outside: Outside;
  users: SoakUser[];
  uploads: UploadRecord[];
  exports: ExportRecord[];
  sessions: SessionRecord[];
  recorder: Recorder;
  /** Where to look for orphan multipart uploads: the soak users' prefixes, or '' for the whole bucket. */
  orphanPrefixes: string[];
  /** Dependencies were broken on purpose: their 503s are expected, however many. */
  dependencyFaults?: boolean;
}

export interface CheckResult {
  violations: Violation[];
  finalStates: Record<string, Record<string, number>>;
  exportsVerified: number;
  uploadsVerified: number;
  /** moto's 500s on parts sent to multipart uploads already aborted (S3 says 404 NoSuchUpload). */
  emulatorPartErrors: number;
  /** API answers of 503 ServiceUnavailable with Retry-After (a dependency too slow), not violations alone. */
  dependencyUnavailable: number;
  /** Export jobs whose POST /export never reached its client with an answer (5xx, network error). */
  unansweredExports: number;
}

const describeUploads = (uploads: MultipartUpload[]) =>
  uploads.map((upload) => `${upload.Key} ${upload.UploadId} (${upload.Initiated?.toISOString()})`).join('; ');

/** Holds S3 and DynamoDB, read directly, to what every operation was told. */
export async function checkInvariants(input: CheckInput): Promise<CheckResult> {
  const { outside, recorder } = input;
  const violations: Violation[] = [];
  const finalStates: Record<string, Record<string, number>> = { upload: {}, export: {} };
  let exportsVerified = 0;
  let uploadsVerified = 0;
  let unansweredExports = 0;
  const uploadsById = new Map(
    input.uploads.flatMap((record) => (record.jobId ? [[record.jobId, record] as const] : [])),
  );
  // A job whose creation answer never reached its client is known only by its name.
  const unanswered = new Map(
    input.uploads.flatMap((record) =>
      record.jobId ? [] : [[`${record.username}/${record.filename}`, record] as const],
    ),
  );
  const exportsById = new Map(
    input.exports.flatMap((record) => (record.jobId ? [[record.jobId, record] as const] : [])),
  );

  const uploadIds = new Map<string, StoredJob>();
  for (const user of input.users) {
    const items = await outside.partition(user.username);
    const jobs = items
      .filter((item) => String(item.sk).startsWith('JOB#'))
      .map((item) => item as unknown as StoredJob);
    const jobsById = new Map(jobs.map((job) => [job.jobId, job]));
    for (const job of jobs) if (job.uploadId) uploadIds.set(job.uploadId, job);

    for (const job of jobs) {
      const states = finalStates[job.type]!;
      states[job.status] = (states[job.status] ?? 0) + 1;
      const base = { username: user.username, jobId: job.jobId, status: job.status };
      if (!TERMINAL.has(job.status)) {
        violations.push({
          ...base,
          rule: 'stuck-job',
          detail: `${job.type} of ${job.filename} still ${job.status} after the settle and the janitor (updated ${job.updatedAt}${job.leaseUntil ? `, lease until ${new Date(job.leaseUntil * 1000).toISOString()}` : ''})`,
        });
      }
      if (job.type === 'upload') {
        const record = uploadsById.get(job.jobId) ?? unanswered.get(`${user.username}/${job.filename}`);
        const steps = record?.steps;
        if (!record) {
          violations.push({
            ...base,
            rule: 'unknown-job',
            detail: `no soak operation knows upload job ${job.jobId} of ${job.filename}`,
          });
          continue;
        }
        if (job.status === 'COMPLETED') {
          const bytes = await outside.bytes(job.key);
          if (!bytes) {
            violations.push({
              ...base,
              rule: 'completed-object-missing',
              detail: `no object at ${job.key}`,
              steps,
            });
          } else if (bytes.length !== record.size || sha256(bytes) !== record.sha256) {
            violations.push({
              ...base,
              rule: 'upload-bytes',
              detail: `${job.key} holds ${bytes.length} bytes sha256 ${sha256(bytes).slice(0, 16)}…; sent ${record.size} bytes sha256 ${record.sha256.slice(0, 16)}…`,
              steps,
            });
          } else uploadsVerified++;
          if (record.killAck) {
            violations.push({
              ...base,
              rule: 'kill-acknowledged-but-completed',
              detail: `a kill or abort answered that it aborted ${job.jobId}, yet the job is COMPLETED and ${job.key} exists`,
              steps,
            });
          }
        } else if (TERMINAL.has(job.status)) {
          const left = (await outside.openUploads(job.key)).filter(
            (upload) => upload.Key === job.key && (!job.uploadId || upload.UploadId === job.uploadId),
          );
          if (left.length > 0) {
            violations.push({
              ...base,
              rule: 'parts-left',
              detail: `multipart upload still open: ${describeUploads(left)}`,
              steps,
            });
          }
          // Names are unique per operation except in upload bursts, where another job of the same
          // name may have completed after this one ended; then the object is that job's.
          const completedSibling = jobs.some(
            (other) => other.type === 'upload' && other.key === job.key && other.status === 'COMPLETED',
          );
          if (!completedSibling && (await outside.exists(job.key))) {
            violations.push({
              ...base,
              rule: 'object-after-abort',
              detail: `${job.key} exists although the job ended ${job.status}${job.error ? ` (${job.error})` : ''}`,
              steps,
            });
          }
          if (record.completedAck) {
            violations.push({
              ...base,
              rule: 'completion-acknowledged-but-lost',
              detail: `the client was told COMPLETED, yet the job is ${job.status}`,
              steps,
            });
          }
        }
        continue;
      }

      // Exports.
      const prefix = `exports/${user.username}/${job.jobId}/`;
      let record = exportsById.get(job.jobId);
      if (!record) {
        // No client learned of this job: its POST /export answered 5xx or never answered (and the
        // client may have started another). Telling the client "not started" is only true if the
        // job then ended FAILED without running; anything else is a phantom export.
        const source = user.files.find((file) => file.filename === job.filename);
        const format = job.details?.format === 'gzip' ? 'gzip' : 'raw';
        record = {
          kind: 'export',
          op: 'unknown',
          username: user.username,
          filename: job.filename,
          format,
          sourceSha256: source?.sha256 ?? '',
          sourceSize: source?.size ?? -1,
          cancelAck: false,
          steps: [`no client was told of this job (created ${job.createdAt})`],
        };
        unansweredExports++;
        // Which unanswered POST /export of this user made it: one that answered 5xx ("not started")
        // within a few seconds of the job's creation, or one whose outcome the client cannot know
        // (no answer within its 28 s timeout, or a connection that failed).
        const created = Date.parse(job.createdAt);
        const near = (at: string, before: number, after: number) =>
          Date.parse(at) >= created - before && Date.parse(at) <= created + after;
        const answered5xx = recorder.serverErrors.find(
          (error) =>
            error.call === 'POST /export' && error.username === user.username && near(error.at, 1000, 30_000),
        );
        const gaveUp = [...recorder.timeouts, ...recorder.connectionFailures].some(
          (failure) =>
            failure.call === 'POST /export' &&
            failure.username === user.username &&
            near(failure.at, 1000, 30_000),
        );
        const ranAnyway = !(job.status === 'FAILED' && (job.partsDone ?? 0) === 0);
        if (ranAnyway && (answered5xx || !gaveUp)) {
          violations.push({
            ...base,
            rule: 'phantom-export',
            detail: `export ${job.jobId} of ${job.filename} (${format}, created ${job.createdAt}) ran to ${job.status} with ${job.partsDone ?? 0} parts done, though ${answered5xx ? `its POST /export answered ${answered5xx.status} at ${answered5xx.at}: ${answered5xx.body}` : 'no POST /export answered with it'}${job.error ? `; error: ${job.error}` : ''}`,
          });
        }
      }
      const steps = record.steps;
      const open = await outside.openUploads(prefix);
      if (job.status === 'SUCCEEDED') {
        if (record.cancelAck) {
          violations.push({
            ...base,
            rule: 'cancel-acknowledged-but-succeeded',
            detail: 'a cancel or kill answered CANCELLING/CANCELLED, yet the export SUCCEEDED',
            steps,
          });
        }
        const problem = await downloadProblem(user, job.jobId, record, recorder);
        if (problem) violations.push({ ...base, rule: 'export-bytes', detail: problem, steps });
        else exportsVerified++;
        if (open.length > 0) {
          violations.push({
            ...base,
            rule: 'parts-left',
            detail: `SUCCEEDED export with an open multipart upload: ${describeUploads(open)}`,
            steps,
          });
        }
      } else if (TERMINAL.has(job.status)) {
        const objects = await outside.objects(prefix);
        if (objects.length > 0 || open.length > 0) {
          violations.push({
            ...base,
            rule: 'export-output-left',
            detail: `${job.status} export left ${objects.map((object) => `${object.key} (${object.size} B)`).join(', ') || 'no object'}; open multipart uploads: ${describeUploads(open) || 'none'}`,
            steps,
          });
        }
      }
    }

    // The bookkeeping that lets a user go on: no slot held by a finished job, no running count left over.
    for (const item of items) {
      const sk = String(item.sk);
      if (sk.startsWith('ACTIVE#')) {
        const holder = jobsById.get(String(item.jobId));
        if (!holder || TERMINAL.has(holder.status)) {
          violations.push({
            rule: 'slot-leak',
            username: user.username,
            jobId: String(item.jobId),
            status: holder?.status ?? 'missing',
            detail: `active slot ${sk} is still held by a ${holder ? `${holder.status} job` : 'missing job'}: no new job of that name can start`,
          });
        }
      } else if (sk.startsWith('RUNNING#')) {
        const type = sk.slice('RUNNING#'.length);
        const running = Number(item.running ?? 0);
        const unfinished = jobs.filter((job) => job.type === type && !TERMINAL.has(job.status));
        if (running !== unfinished.length) {
          violations.push({
            rule: 'counter-leak',
            username: user.username,
            detail: `${sk} counts ${running} running ${type} jobs; ${unfinished.length} are unfinished`,
          });
        }
        // Uploads also count their declared bytes (the bytes-in-flight limit).
        const bytes = Number(item.bytes ?? 0);
        const declared =
          type === 'upload' ? unfinished.reduce((sum, job) => sum + Number(job.size ?? 0), 0) : 0;
        if (bytes !== declared) {
          violations.push({
            rule: 'counter-leak',
            username: user.username,
            detail: `${sk} counts ${bytes} bytes in flight; its unfinished jobs declare ${declared}`,
          });
        }
      }
    }

    // Every operation that learned a job id must find that job in the table.
    for (const record of [...input.uploads, ...input.exports]) {
      if (record.username === user.username && record.jobId && !jobsById.has(record.jobId)) {
        violations.push({
          rule: 'job-missing',
          username: user.username,
          jobId: record.jobId,
          detail: `${record.kind} job ${record.jobId} (${record.filename}) is not in the jobs table`,
          steps: record.steps,
        });
      }
    }
  }

  // A retried Uppy create carries its key: the name it met held must have been another upload's.
  for (const record of input.uploads.filter((upload) => upload.keyRefused)) {
    violations.push({
      rule: 'idempotent-retry-refused',
      username: record.username,
      detail: `Uppy's create of ${record.filename}, retried with its idempotency key, met 409 UploadInProgress from the upload an earlier try opened`,
      steps: record.steps,
    });
  }

  // A sign-out ends its sign-in everywhere (within the token-state cache's life), and nothing else does.
  for (const record of input.sessions.filter((session) => session.acceptedAfterSignOut.length > 0)) {
    violations.push({
      rule: 'signed-out-token-accepted',
      username: record.username,
      detail: `${record.op}: after the sign-out, ${record.acceptedAfterSignOut.map((seen) => `token ${seen.token} (${seen.token === 0 ? 'the sign-in' : `renewal ${seen.token}`}) got ${seen.status}`).join(', ')}`,
      steps: record.steps,
    });
  }
  for (const refusal of recorder.refusedTokens) {
    violations.push({
      rule: 'live-token-refused',
      username: refusal.username,
      detail: `${refusal.call} answered 401 at ${refusal.at} to a token neither expired nor signed out: ${refusal.message}`,
    });
  }

  for (const prefix of input.orphanPrefixes) {
    const open = await outside.openUploads(prefix);
    if (open.length > 0) {
      violations.push({
        rule: 'orphan-multipart-upload',
        detail: `${open.length} multipart upload(s) open under "${prefix}" after the janitor: ${describeUploads(open)}`,
      });
    }
  }

  // moto answers a part PUT to an aborted multipart upload with 500 (a KeyError inside it) where S3
  // answers 404 NoSuchUpload; those are the emulator's, not the service's. Any other 5xx counts.
  let emulatorPartErrors = 0;
  for (const error of recorder.serverErrors) {
    const owner = error.uploadId ? uploadIds.get(error.uploadId) : undefined;
    if (error.call === 'S3 PUT part' && owner && ['ABORTED', 'EXPIRED', 'FAILED'].includes(owner.status)) {
      emulatorPartErrors++;
      continue;
    }
    // A 503 with Retry-After for a dependency that stalled is the answer DESIGN.md asks for, and the
    // client retries it; on emulators under soak load one now and then is expected (LocalStack's
    // DynamoDB once took longer than the 2 s timeout). Counted apart; a violation only when common.
    if (isDependencyUnavailable(error)) continue;
    violations.push({
      rule: 'http-5xx',
      ...(owner ? { jobId: owner.jobId, status: owner.status } : {}),
      detail: `${error.call} answered ${error.status} at ${error.at}${error.uploadId ? ` (upload ${error.uploadId})` : ''}: ${error.body}`,
    });
  }
  const dependencyUnavailable = recorder.dependencyUnavailable();
  const apiAnswers = recorder.apiAnswers();
  if (
    !input.dependencyFaults &&
    dependencyUnavailable.length > Math.max(MAX_DEPENDENCY_UNAVAILABLE_SHARE * apiAnswers, 2)
  ) {
    violations.push({
      rule: 'dependency-unavailable',
      detail: `${dependencyUnavailable.length} of ${apiAnswers} API answers were 503 for a slow or unavailable dependency; first: ${dependencyUnavailable
        .slice(0, 3)
        .map((error) => `${error.call} at ${error.at}: ${error.body}`)
        .join('; ')}`,
    });
  }
  // API Gateway gives up after 29 s with a 504: an API call unanswered for 28 s is a 5xx in AWS.
  for (const timeout of recorder.timeouts) {
    if (timeout.call.startsWith('S3 ')) continue;
    violations.push({
      rule: 'api-timeout',
      detail: `${timeout.call} got no answer within 28 s (at ${timeout.at})`,
    });
  }
  return {
    violations,
    finalStates,
    exportsVerified,
    uploadsVerified,
    emulatorPartErrors,
    unansweredExports,
    dependencyUnavailable: dependencyUnavailable.length,
  };
}

const describeError = (error: unknown): string => {
  const cause = (error as Error)?.cause;
  return `${(error as Error)?.name}: ${(error as Error)?.message}${cause ? ` (cause: ${describeError(cause)})` : ''}`;
};

/**
 * verifyDownload, tried up to three times: the checks run after the faults stopped, but a request
 * that still fails to get an answer or a whole body is a finding to report, not a reason to stop
 * checking the rest.
 */
async function downloadProblem(
  user: SoakUser,
  jobId: string,
  record: ExportRecord,
  recorder: Recorder,
): Promise<string | undefined> {
  const errors: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await verifyDownload(user, jobId, record, recorder);
    } catch (error) {
      errors.push(`attempt ${attempt} at ${new Date().toISOString()}: ${describeError(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  return `the download could not be fetched: ${errors.join('; ')}`;
}

/** The export's download, fetched through its downloadUrl from GET /jobs/{id}, against its source. */
async function verifyDownload(
  user: SoakUser,
  jobId: string,
  record: ExportRecord,
  recorder: Recorder,
): Promise<string | undefined> {
  const job = (await user.client.getJob(jobId)) as { downloadUrl?: string; status: string };
  if (!job.downloadUrl) return `GET /jobs/${jobId} answered ${job.status} with no downloadUrl`;
  const response = await recorder.fetch(job.downloadUrl, { method: 'GET' });
  if (!response.ok) return `the download answered ${response.status}`;
  const body = Buffer.from(await response.arrayBuffer());
  recorder.bytesDown += body.length;
  let content = body;
  if (record.format === 'gzip') {
    try {
      content = gunzipSync(body);
    } catch (error) {
      return `the gzip download (${body.length} bytes) does not gunzip: ${(error as Error).message}`;
    }
  }
  if (content.length !== record.sourceSize || sha256(content) !== record.sourceSha256) {
    return `the ${record.format} download gives ${content.length} bytes sha256 ${sha256(content).slice(0, 16)}…; the source has ${record.sourceSize} bytes sha256 ${record.sourceSha256.slice(0, 16)}…`;
  }
  return undefined;
}
