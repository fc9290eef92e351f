import { createHash, randomBytes } from 'node:crypto';
import {
  AbortedError,
  ApiError,
  ChecksumMismatchError,
  type CreatedUpload,
  type CreateUploadInput,
  type FinishedPart,
  type Job,
  type PartToSign,
  type ReconciledJob,
  type SignedPart,
  TransferError,
  type UploadProgress,
} from '../../client/index.ts';
import { ChecksummedUrlPool, PartUrlPool } from '../../client/parts.ts';
import { runUpload, type UploadApi, type UploadOptions } from '../../client/upload.ts';
import { type ChecksumAlgorithm, checksumHeader, checksumOf } from '../../common/checksums.ts';

/**
 * The service and S3 in memory, behind the same interface the client uses: jobs, presigned URLs
 * (fake://s3/<jobId>/<part>), part PUTs with scripted failures, progress, completion, abort. With
 * `takesChecksums`, uploads created with a checksum algorithm behave as S3's do: URLs sign each
 * part's checksum as a header, a PUT whose header differs is 403 and whose body does not match is
 * 400 BadDigest, completion checks the whole file's CRC (409 ChecksumMismatch).
 */
class FakeService implements UploadApi {
  readonly jobs = new Map<
    string,
    { job: Job; parts: Map<number, Uint8Array>; checksums: Map<number, string>; signed: Map<number, string> }
  >();
  readonly calls = {
    create: 0,
    sign: [] as number[][],
    progress: [] as number[][],
    progressChecksums: [] as (string | undefined)[],
    complete: 0,
    completeChecksums: [] as (string | undefined)[],
    abort: 0,
  };
  takesChecksums = false;
  /** Bytes to flip in a part's body on its way to S3, once per listed part. */
  readonly corruptOnce = new Set<number>();
  readonly puts: number[] = [];
  /** Answers (HTTP statuses) to give a part's next PUTs before accepting it. */
  readonly failures = new Map<number, number[]>();
  partSize = 1024;
  putDelayMs = 0;
  progressDelayMs = 0;
  /** Completions refused as S3 refuses one whose part changed under it (InvalidPart): none missing. */
  partsChangedOnComplete = 0;
  inFlight = 0;
  maxInFlight = 0;
  urlLifetimeMs = 15 * 60_000;
  goneAs500 = false;
  jobChecks = 0;
  private nextId = 1;

  newJob(
    filename: string,
    size: number,
    partSize = this.partSize,
    checksumAlgorithm?: ChecksumAlgorithm,
  ): Job {
    const jobId = `job${this.nextId++}`;
    const partCount = Math.ceil(size / partSize);
    const job: Job = {
      ...(checksumAlgorithm ? { checksumAlgorithm } : {}),
      jobId,
      type: 'upload',
      status: 'UPLOADING',
      filename,
      size,
      partSize,
      partCount,
      progress: { partsDone: 0, partCount, bytesDone: 0, bytesTotal: size },
      createdAt: '',
      updatedAt: '',
    };
    this.jobs.set(jobId, { job, parts: new Map(), checksums: new Map(), signed: new Map() });
    return job;
  }

  /** Puts a part in S3 directly, as an earlier run would have (with its checksum, for an upload with an algorithm). */
  async hold(jobId: string, partNumber: number, bytes: Uint8Array): Promise<void> {
    const entry = this.jobs.get(jobId)!;
    entry.parts.set(partNumber, bytes);
    const algorithm = entry.job.checksumAlgorithm;
    if (algorithm) entry.checksums.set(partNumber, await checksumOf(algorithm, bytes));
  }

  private sign(jobId: string, partNumbers: number[]): SignedPart[] {
    const expiresAt = new Date(Date.now() + this.urlLifetimeMs).toISOString();
    return partNumbers.map((partNumber) => ({
      partNumber,
      url: `fake://s3/${jobId}/${partNumber}`,
      expiresAt,
      headers: {},
    }));
  }

  private entry(jobId: string) {
    const entry = this.jobs.get(jobId);
    if (!entry) throw new ApiError(404, 'JobNotFound', `no job ${jobId}`);
    return entry;
  }

  fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const [, , , jobId, part] = url.split('/');
    const partNumber = Number(part);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const body = new Uint8Array(
        await new Response(init.body as ConstructorParameters<typeof Response>[0]).arrayBuffer(),
      );
      if (this.putDelayMs) await new Promise((resolve) => setTimeout(resolve, this.putDelayMs));
      init.signal?.throwIfAborted();
      this.puts.push(partNumber);
      const entry = this.jobs.get(jobId!)!;
      const headers = new Headers(init.headers);
      if (this.corruptOnce.delete(partNumber)) body[0] = body[0]! ^ 0xff;
      const algorithm = entry.job.checksumAlgorithm;
      if (algorithm) {
        // The URL signed the checksum header: anything else is a signature mismatch.
        if (headers.get(checksumHeader(algorithm)) !== entry.signed.get(partNumber))
          return new Response('<Error><Code>SignatureDoesNotMatch</Code></Error>', { status: 403 });
        if ((await checksumOf(algorithm, body)) !== entry.signed.get(partNumber))
          return new Response('<Error><Code>BadDigest</Code></Error>', { status: 400 });
      }
      if (entry.job.status !== 'UPLOADING') {
        // S3 answers 404 NoSuchUpload; some emulators a 500.
        return this.goneAs500
          ? new Response('<Error><Code>InternalError</Code></Error>', { status: 500 })
          : new Response('<Error><Code>NoSuchUpload</Code></Error>', { status: 404 });
      }
      const failure = this.failures.get(partNumber)?.shift();
      if (failure) {
        const code = failure === 403 ? 'AccessDenied' : failure === 400 ? 'EntityTooSmall' : 'InternalError';
        return new Response(`<Error><Code>${code}</Code><Message>nope</Message></Error>`, {
          status: failure,
        });
      }
      entry.parts.set(partNumber, body);
      if (algorithm) entry.checksums.set(partNumber, entry.signed.get(partNumber)!);
      return new Response(null, {
        status: 200,
        headers: { etag: `"${createHash('md5').update(body).digest('hex')}"` },
      });
    } finally {
      this.inFlight--;
    }
  };

  async createUpload(input: CreateUploadInput): Promise<CreatedUpload> {
    this.calls.create++;
    const active = [...this.jobs.values()].find(
      (entry) => entry.job.filename === input.filename && entry.job.status === 'UPLOADING',
    );
    if (active) {
      throw new ApiError(409, 'UploadInProgress', `${input.filename} is already being uploaded`, {
        details: { jobId: active.job.jobId },
      });
    }
    const algorithm = this.takesChecksums ? input.checksumAlgorithm : undefined;
    const job = this.newJob(input.filename, input.size, input.partSize, algorithm);
    const first = Array.from({ length: Math.min(job.partCount, 100) }, (_, index) => index + 1);
    return {
      job,
      uploadId: 'u',
      key: `uploads/me/${job.filename}`,
      partSize: job.partSize,
      partCount: job.partCount,
      parts: algorithm ? [] : this.sign(job.jobId, first),
    };
  }

  async reconcileUpload(jobId: string): Promise<ReconciledJob> {
    const { job, parts, checksums } = this.entry(jobId);
    const all = Array.from({ length: job.partCount }, (_, index) => index + 1);
    return {
      job,
      uploadedParts: all.filter((n) => parts.has(n)),
      missingParts: all.filter((n) => !parts.has(n)),
      parts: all
        .filter((n) => parts.has(n))
        .map((n) => ({
          partNumber: n,
          size: parts.get(n)!.length,
          ...(checksums.has(n) ? { checksum: checksums.get(n)! } : {}),
        })),
    };
  }

  async signParts(jobId: string, partNumbers: number[]): Promise<SignedPart[]> {
    this.calls.sign.push(partNumbers);
    if (this.entry(jobId).job.checksumAlgorithm)
      throw new ApiError(400, 'ChecksumRequired', 'this upload signs parts with their checksums');
    return this.sign(jobId, partNumbers);
  }

  async signChecksummedParts(jobId: string, parts: PartToSign[]): Promise<SignedPart[]> {
    this.calls.sign.push(parts.map((part) => part.partNumber));
    const entry = this.entry(jobId);
    const algorithm = entry.job.checksumAlgorithm!;
    return this.sign(
      jobId,
      parts.map((part) => part.partNumber),
    ).map((signed, index) => {
      const checksum = parts[index]!.checksum;
      entry.signed.set(signed.partNumber, checksum);
      return { ...signed, headers: { [checksumHeader(algorithm)]: checksum } };
    });
  }

  async reportProgress(jobId: string, parts: FinishedPart[]): Promise<Job> {
    this.calls.progress.push(parts.map((part) => part.partNumber));
    this.calls.progressChecksums.push(...parts.map((part) => part.checksum));
    if (this.progressDelayMs) await new Promise((resolve) => setTimeout(resolve, this.progressDelayMs));
    const { job } = this.entry(jobId);
    if (job.status !== 'UPLOADING')
      throw new ApiError(409, 'JobNotActive', `upload ${jobId} is ${job.status}`);
    return job;
  }

  async completeUpload(jobId: string, options: { checksum?: string | undefined } = {}): Promise<Job> {
    this.calls.complete++;
    this.calls.completeChecksums.push(options.checksum);
    const { job, parts } = this.entry(jobId);
    const missing = Array.from({ length: job.partCount }, (_, index) => index + 1).filter(
      (n) => !parts.has(n),
    );
    if (missing.length > 0) {
      throw new ApiError(409, 'PartsIncomplete', `missing ${missing.join(',')}`, { details: { missing } });
    }
    if (this.partsChangedOnComplete > 0) {
      this.partsChangedOnComplete--;
      throw new ApiError(409, 'PartsIncomplete', 'a part changed', {
        details: { missing: [], wrongSize: [] },
      });
    }
    const algorithm = job.checksumAlgorithm;
    if (algorithm && algorithm !== 'SHA256') {
      const value = await checksumOf(algorithm, this.assembled(jobId));
      if (options.checksum !== undefined && options.checksum !== value)
        throw new ApiError(409, 'ChecksumMismatch', `S3 computed ${value}`);
      job.checksum = { algorithm, type: 'FULL_OBJECT', value };
    }
    job.status = 'COMPLETED';
    return job;
  }

  async abortUpload(jobId: string): Promise<Job> {
    this.calls.abort++;
    const entry = this.entry(jobId);
    entry.job.status = 'ABORTED';
    entry.parts.clear();
    return entry.job;
  }

  async getJob(jobId: string): Promise<Job> {
    this.jobChecks++;
    return this.entry(jobId).job;
  }

  async findUnfinishedUpload(filename: string, size: number): Promise<Job | undefined> {
    return [...this.jobs.values()]
      .map((entry) => entry.job)
      .find((job) => job.filename === filename && job.size === size && job.status === 'UPLOADING');
  }

  /** The seed's form: an empty file, stored at once. */
  async storeEmptyFile(filename: string, options: { overwrite?: boolean | undefined } = {}): Promise<Job> {
    this.emptyFiles.push({ filename, overwrite: options.overwrite === true });
    const job = this.newJob(filename, 0, 0);
    job.status = 'COMPLETED';
    job.partCount = 1;
    return job;
  }

  emptyFiles: { filename: string; overwrite: boolean }[] = [];

  /** The object as completion would assemble it. */
  assembled(jobId: string): Buffer {
    const { job, parts } = this.entry(jobId);
    return Buffer.concat(Array.from({ length: job.partCount }, (_, index) => parts.get(index + 1)!));
  }
}

const noWait = { sleep: async () => {}, random: () => 0.5 };
const upload = (service: FakeService, options: Partial<UploadOptions> & Pick<UploadOptions, 'source'>) =>
  runUpload(service, { filename: 'file.bin', partRetry: noWait, ...options });

describe('upload', () => {
  it('sends every part with at most `concurrency` in flight, reports progress in batches, completes', async () => {
    const service = new FakeService();
    service.putDelayMs = 2;
    service.progressDelayMs = 15;
    const bytes = randomBytes(40 * 1024 + 123);
    const events: UploadProgress[] = [];
    const result = await upload(service, {
      source: bytes,
      concurrency: 3,
      onProgress: (p) => events.push(p),
    });

    expect(result).toMatchObject({
      partCount: 41,
      partsSent: 41,
      partsReused: 0,
      resumed: false,
      retries: 0,
    });
    expect(result.job.status).toBe('COMPLETED');
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
    expect(service.maxInFlight).toBe(3);
    // One report in flight at a time, each carrying what finished meanwhile: far fewer than one per part.
    expect(service.calls.progress.flat().sort((a, b) => a - b)).toEqual(
      Array.from({ length: 41 }, (_, index) => index + 1),
    );
    expect(service.calls.progress.length).toBeLessThan(20);
    expect(result.progressReports).toBe(service.calls.progress.length);

    const parts = events.filter((event) => event.kind === 'part');
    expect(parts).toHaveLength(41);
    expect(parts.map((event) => event.partsDone)).toEqual(
      Array.from({ length: 41 }, (_, index) => index + 1),
    );
    expect(parts.at(-1)).toMatchObject({ bytesDone: bytes.length, bytesTotal: bytes.length, partsSent: 41 });
  });

  it('signs URLs beyond the first 100 in batches, ahead of need', async () => {
    const service = new FakeService();
    const bytes = randomBytes(2500 * 1024);
    const result = await upload(service, { source: bytes, concurrency: 8 });
    expect(result.partsSent).toBe(2500);
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
    const signed = service.calls.sign.flat();
    expect(new Set(signed).size).toBe(signed.length);
    expect(signed.sort((a, b) => a - b)).toEqual(Array.from({ length: 2400 }, (_, index) => index + 101));
    expect(Math.max(...service.calls.sign.map((batch) => batch.length))).toBeLessThanOrEqual(500);
  });

  it('retries a failing part with exponential backoff and succeeds', async () => {
    const service = new FakeService();
    service.failures.set(2, [500, 503, 500]);
    const waits: number[] = [];
    const result = await upload(service, {
      source: randomBytes(3000),
      partRetry: { sleep: async (ms: number) => void waits.push(ms), random: () => 0.999, baseDelayMs: 100 },
    });
    expect(result.retries).toBe(3);
    expect(waits).toEqual([99, 199, 399]);
    expect(service.puts.filter((n) => n === 2)).toHaveLength(4);
  });

  it('gives up on a part that keeps failing, and leaves the job for a resume', async () => {
    const service = new FakeService();
    service.failures.set(1, [500, 500, 500, 500]);
    const error = await upload(service, {
      source: randomBytes(3000),
      concurrency: 1,
      partRetry: { ...noWait, retries: 3 },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransferError);
    expect(error).toMatchObject({ partNumber: 1, status: 500, code: 'InternalError' });
    expect(service.calls.abort).toBe(0);
    expect([...service.jobs.values()][0]!.job.status).toBe('UPLOADING');
  });

  it('does not retry what retrying cannot fix', async () => {
    const service = new FakeService();
    service.failures.set(1, [400]);
    await expect(upload(service, { source: randomBytes(10), concurrency: 1 })).rejects.toMatchObject({
      code: 'EntityTooSmall',
    });
    expect(service.puts).toEqual([1]);
  });

  it('signs a refused (expired) URL again and retries at once', async () => {
    const service = new FakeService();
    service.failures.set(1, [403]);
    const result = await upload(service, { source: randomBytes(100) });
    expect(result.job.status).toBe('COMPLETED');
    expect(service.calls.sign).toEqual([[1]]);
  });

  it('re-signs URLs close to expiry before using them, even short-lived ones', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const signed: number[][] = [];
    const sign = async (partNumbers: number[]) => {
      signed.push(partNumbers);
      return partNumbers.map((partNumber) => ({
        partNumber,
        url: `u${partNumber}@${now}`,
        expiresAt: new Date(now + 15 * 60_000).toISOString(),
        headers: {},
      }));
    };
    const pool = new PartUrlPool([1, 2, 3], sign, { now: () => now, lookahead: 10 });
    expect(await pool.get(1)).toBe(`u1@${now}`);
    expect(signed).toEqual([[1, 2, 3]]);
    now += 14 * 60_000 + 30_000; // 30 s left: inside the one-minute margin
    expect(await pool.get(2)).toBe(`u2@${now}`);
    pool.invalidate(3);
    expect(await pool.get(3)).toBe(`u3@${now}`);

    // URLs that live less than the margin are still used while in the first half of their life.
    const service = new FakeService();
    service.urlLifetimeMs = 30_000;
    await upload(service, { source: randomBytes(3000) });
    expect(service.calls.sign).toEqual([]);
  });

  it('resumes a job by id, sending only the parts S3 lacks', async () => {
    const service = new FakeService();
    const bytes = randomBytes(5 * 1024);
    const job = service.newJob('file.bin', bytes.length);
    const entry = service.jobs.get(job.jobId)!;
    entry.parts.set(1, bytes.subarray(0, 1024));
    entry.parts.set(4, bytes.subarray(3072, 4096));
    const starts: unknown[] = [];
    const result = await upload(service, {
      source: bytes,
      resume: job.jobId,
      onStart: (s) => starts.push(s),
    });
    expect(starts).toEqual([
      expect.objectContaining({ resumed: true, partsOnServer: 2, bytesOnServer: 2048, partsToSend: 3 }),
    ]);
    expect(service.puts.sort()).toEqual([2, 3, 5]);
    expect(result).toMatchObject({ resumed: true, partsSent: 3, partsReused: 2 });
    expect(service.assembled(job.jobId).equals(bytes)).toBe(true);
    expect(service.calls.create).toBe(0);
  });

  it('with resume: true, finds the unfinished upload of this name and size', async () => {
    const service = new FakeService();
    const bytes = randomBytes(3 * 1024);
    const job = service.newJob('file.bin', bytes.length);
    service.jobs.get(job.jobId)!.parts.set(2, bytes.subarray(1024, 2048));
    const result = await upload(service, { source: bytes, resume: true });
    expect(result).toMatchObject({ jobId: job.jobId, partsSent: 2, partsReused: 1 });
  });

  it('refuses to resume a job of another size, and never resumes without being asked', async () => {
    const service = new FakeService();
    const job = service.newJob('file.bin', 999);
    await expect(upload(service, { source: randomBytes(1000), resume: job.jobId })).rejects.toMatchObject({
      code: 'ResumeMismatch',
    });
    await expect(upload(service, { source: randomBytes(1000) })).rejects.toMatchObject({
      status: 409,
      code: 'UploadInProgress',
    });
  });

  it('aborts the job on the server when the signal fires, and sends nothing more', async () => {
    const service = new FakeService();
    service.putDelayMs = 5;
    const controller = new AbortController();
    const error = await upload(service, {
      source: randomBytes(100 * 1024),
      concurrency: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.kind === 'part' && p.partsDone === 3) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ outcome: 'killed', jobType: 'upload', jobId: 'job1' });
    expect(service.calls.abort).toBe(1);
    expect(service.calls.complete).toBe(0);
    const putsAtAbort = service.puts.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(service.puts.length).toBe(putsAtAbort);
    expect(putsAtAbort).toBeLessThan(10);
  });

  it('keeps the job when asked to, so that it can be resumed', async () => {
    const service = new FakeService();
    const controller = new AbortController();
    const bytes = randomBytes(20 * 1024);
    const error = await upload(service, {
      source: bytes,
      concurrency: 1,
      keepOnAbort: true,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.kind === 'part' && p.partsDone === 5) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AbortError', outcome: 'kept', jobId: 'job1' });
    expect(service.calls.abort).toBe(0);
    const resumed = await upload(service, { source: bytes, resume: true });
    expect(resumed).toMatchObject({ jobId: 'job1', partsReused: 5, partsSent: 15 });
    expect(service.assembled('job1').equals(bytes)).toBe(true);
  });

  it('completes again when a part changed under the first completion (nothing missing, S3 InvalidPart)', async () => {
    const service = new FakeService();
    service.partsChangedOnComplete = 1;
    const source = randomBytes(200 * 1024);
    const result = await upload(service, { source });
    expect(result.job.status).toBe('COMPLETED');
    expect(service.calls.complete).toBe(2);
    expect(service.assembled(result.jobId).equals(source)).toBe(true);
  });

  it('stops when the job is killed elsewhere (progress answers 409 JobNotActive)', async () => {
    const service = new FakeService();
    service.putDelayMs = 2;
    let killed = false;
    const error = await upload(service, {
      source: randomBytes(200 * 1024),
      concurrency: 2,
      onProgress: (p) => {
        if (!killed && p.kind === 'part') {
          killed = true;
          service.jobs.get(p.jobId)!.job.status = 'ABORTED';
        }
      },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: expect.stringMatching(/UploadGone/) });
    expect(service.puts.length).toBeLessThan(20);
  });

  it.each([false, true])(
    'stops retrying parts once the job is gone on the server (S3 answering with a 500: %s)',
    async (goneAs500) => {
      const service = new FakeService();
      service.goneAs500 = goneAs500;
      const controller = { killed: false };
      const error = await upload(service, {
        source: randomBytes(50 * 1024),
        concurrency: 1,
        onProgress: (p) => {
          if (!controller.killed && p.kind === 'part') {
            controller.killed = true;
            // Killed elsewhere; this client's next progress report has not gone out yet.
            service.jobs.get(p.jobId)!.job.status = 'ABORTED';
          }
        },
        partRetry: { ...noWait, retries: 6 },
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'UploadGone' });
      expect(service.puts.length).toBeLessThanOrEqual(3);
    },
  );

  it('uploads from a stream read once, front to back, and skips parts already sent on resume', async () => {
    const bytes = randomBytes(10 * 1024 + 7);
    async function* chunks(data: Uint8Array) {
      for (let offset = 0; offset < data.length; offset += 777) yield data.subarray(offset, offset + 777);
    }
    const service = new FakeService();
    const result = await upload(service, {
      source: { stream: chunks(bytes), size: bytes.length },
      concurrency: 4,
    });
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);

    const again = new FakeService();
    const job = again.newJob('file.bin', bytes.length);
    again.jobs.get(job.jobId)!.parts.set(2, bytes.subarray(1024, 2048));
    const resumed = await upload(again, {
      source: { stream: ReadableStream.from(chunks(bytes)), size: bytes.length },
      resume: job.jobId,
    });
    expect(resumed.partsSent).toBe(10);
    expect(again.assembled(job.jobId).equals(bytes)).toBe(true);

    await expect(
      upload(new FakeService(), { source: { stream: chunks(bytes), size: bytes.length + 1 } }),
    ).rejects.toMatchObject({ code: 'StreamSize' });
  });

  it('stores an empty file through the form route: no part to send, no multipart upload', async () => {
    const service = new FakeService();
    const result = await upload(service, {
      source: new Uint8Array(0),
      filename: 'empty.txt',
      overwrite: true,
    });
    expect(result).toMatchObject({
      filename: 'empty.txt',
      size: 0,
      partsSent: 0,
      job: { status: 'COMPLETED' },
    });
    expect(service.emptyFiles).toEqual([{ filename: 'empty.txt', overwrite: true }]);
    expect(service.calls.create).toBe(0);
  });

  it('checks its input before calling the service', async () => {
    const service = new FakeService();
    await expect(upload(service, { source: randomBytes(10), partSize: 1024 })).rejects.toMatchObject({
      code: 'BadPartSize',
    });
    await expect(upload(service, { source: randomBytes(10), concurrency: 0 })).rejects.toMatchObject({
      code: 'BadConcurrency',
    });
    expect(service.calls.create).toBe(0);
  });
});

/** Bytes in memory as a random-access source that counts its reads and how far they ran ahead of the PUTs. */
function countingSource(bytes: Uint8Array, service: FakeService) {
  const reads = new Map<number, number>();
  let readCount = 0;
  let maxAhead = 0;
  return {
    reads,
    get maxAhead() {
      return maxAhead;
    },
    source: {
      size: bytes.length,
      read: async (offset: number, length: number) => {
        reads.set(offset, (reads.get(offset) ?? 0) + 1);
        readCount++;
        maxAhead = Math.max(maxAhead, readCount - service.puts.length);
        return bytes.subarray(offset, offset + length);
      },
    },
  };
}

const crc32Of = (bytes: Uint8Array) => checksumOf('CRC32', bytes);

describe('upload with checksums', () => {
  it('is on by default: CRC32 per part, read once, URLs signed in batches, the whole CRC sent at completion', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    service.putDelayMs = 5;
    const bytes = randomBytes(64 * 1024 + 99);
    const counting = countingSource(bytes, service);
    const events: UploadProgress[] = [];
    const result = await upload(service, {
      source: counting.source,
      concurrency: 4,
      onProgress: (p) => events.push(p),
    });

    const job = service.jobs.get(result.jobId)!.job;
    expect(job.checksumAlgorithm).toBe('CRC32');
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
    const whole = await crc32Of(bytes);
    expect(result).toMatchObject({ checksumAlgorithm: 'CRC32', checksum: whole, partsSent: 65 });
    expect(service.calls.completeChecksums).toEqual([whole]);
    expect(job.checksum).toEqual({ algorithm: 'CRC32', type: 'FULL_OBJECT', value: whole });
    // Each part read exactly once, and never more than the parts in flight and the read-ahead
    // (at most 4 x concurrency parts) ahead of the PUTs.
    expect([...counting.reads.values()].every((count) => count === 1)).toBe(true);
    expect(counting.reads.size).toBe(65);
    expect(counting.maxAhead).toBeLessThanOrEqual(4 + 16);
    expect(counting.maxAhead).toBeGreaterThan(4);
    // Batched: far fewer signing requests than parts, each part signed once.
    expect(service.calls.sign.flat().sort((a, b) => a - b)).toEqual(
      Array.from({ length: 65 }, (_, index) => index + 1),
    );
    expect(service.calls.sign.length).toBeLessThanOrEqual(65 / 4);
    // The progress reports and events carry each part's checksum.
    const partCrc = (n: number) => crc32Of(bytes.subarray((n - 1) * 1024, n * 1024));
    expect(service.calls.progressChecksums).toHaveLength(65);
    const reported = service.calls.progress.flat();
    for (let i = 0; i < reported.length; i++)
      expect(service.calls.progressChecksums[i]).toBe(await partCrc(reported[i]!));
    const partEvent = events.find((event) => event.kind === 'part' && event.partNumber === 7)!;
    expect(partEvent.checksum).toBe(await partCrc(7));
  });

  it('takes another algorithm, or none', async () => {
    for (const algorithm of ['CRC32C', 'CRC64NVME', 'SHA256'] as const) {
      const service = new FakeService();
      service.takesChecksums = true;
      const bytes = randomBytes(5 * 1024 + 1);
      const result = await upload(service, { source: bytes, checksumAlgorithm: algorithm });
      expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
      expect(service.jobs.get(result.jobId)!.job.checksumAlgorithm).toBe(algorithm);
      // SHA256 is composite: S3 has no whole-file value to check at completion.
      const expected = algorithm === 'SHA256' ? undefined : await checksumOf(algorithm, bytes);
      expect(service.calls.completeChecksums).toEqual([expected]);
      expect(result.checksum).toBe(expected);
    }

    const plain = new FakeService();
    plain.takesChecksums = true;
    const result = await upload(plain, { source: randomBytes(3000), checksumAlgorithm: false });
    expect(plain.jobs.get(result.jobId)!.job.checksumAlgorithm).toBeUndefined();
    expect(result).toMatchObject({ checksumAlgorithm: undefined, checksum: undefined });
    expect(plain.calls.completeChecksums).toEqual([undefined]);

    await expect(
      upload(new FakeService(), { source: randomBytes(10), checksumAlgorithm: 'MD5' as ChecksumAlgorithm }),
    ).rejects.toMatchObject({ code: 'BadChecksumAlgorithm' });
  });

  it('says so and uploads without checksums when the service does not take the algorithm', async () => {
    const service = new FakeService();
    const warnings: string[] = [];
    const bytes = randomBytes(4000);
    const result = await upload(service, { source: bytes, onWarning: (message) => warnings.push(message) });
    expect(warnings).toEqual([expect.stringMatching(/did not take checksumAlgorithm CRC32/)]);
    expect(result.checksumAlgorithm).toBeUndefined();
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
  });

  it('sends a part again when S3 finds its body does not match its checksum (400 BadDigest)', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    service.corruptOnce.add(2);
    const bytes = randomBytes(3000);
    const result = await upload(service, { source: bytes });
    expect(result.retries).toBe(1);
    expect(service.puts.filter((n) => n === 2)).toHaveLength(2);
    expect(service.assembled(result.jobId).equals(bytes)).toBe(true);
  });

  it('resumes by checksum: a part S3 holds is reused only if the file still has it, and each part is read once', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    const bytes = randomBytes(5 * 1024);
    const job = service.newJob('file.bin', bytes.length, 1024, 'CRC32');
    await service.hold(job.jobId, 1, bytes.subarray(0, 1024));
    // Sent by an earlier run, before the file changed there.
    await service.hold(job.jobId, 2, randomBytes(1024));
    await service.hold(job.jobId, 4, bytes.subarray(3072, 4096));
    const counting = countingSource(bytes, service);
    const starts: unknown[] = [];
    const events: UploadProgress[] = [];
    const result = await upload(service, {
      source: counting.source,
      resume: job.jobId,
      onStart: (start) => starts.push(start),
      onProgress: (p) => events.push(p),
    });
    expect(starts).toEqual([
      expect.objectContaining({
        partsOnServer: 3,
        partsToSend: 2,
        partsToVerify: 3,
        checksumAlgorithm: 'CRC32',
      }),
    ]);
    expect(
      events
        .filter((event) => event.kind === 'verified')
        .map((event) => [event.partNumber, event.matched])
        .sort(),
    ).toEqual([
      [1, true],
      [2, false],
      [4, true],
    ]);
    expect(service.puts.sort()).toEqual([2, 3, 5]);
    expect(result).toMatchObject({ resumed: true, partsSent: 3, partsReused: 2, partsChanged: 1 });
    expect([...counting.reads.values()]).toEqual([1, 1, 1, 1, 1]);
    expect(service.assembled(job.jobId).equals(bytes)).toBe(true);
    expect(service.calls.completeChecksums).toEqual([await crc32Of(bytes)]);
  });

  it('resumes a stream by checksum, reading it once, front to back', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    const bytes = randomBytes(6 * 1024 + 5);
    const job = service.newJob('file.bin', bytes.length, 1024, 'CRC32');
    await service.hold(job.jobId, 3, randomBytes(1024));
    await service.hold(job.jobId, 5, bytes.subarray(4096, 5120));
    async function* chunks() {
      for (let offset = 0; offset < bytes.length; offset += 700) yield bytes.subarray(offset, offset + 700);
    }
    const result = await upload(service, {
      source: { stream: chunks(), size: bytes.length },
      resume: job.jobId,
      concurrency: 3,
    });
    expect(result).toMatchObject({ partsReused: 1, partsChanged: 1, partsSent: 6 });
    expect(service.assembled(job.jobId).equals(bytes)).toBe(true);
  });

  it('throws ChecksumMismatchError when S3 refuses the whole file, and a resume repairs the part that differs', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    const bytes = randomBytes(4 * 1024);
    let swapped = false;
    const error = await upload(service, {
      source: bytes,
      concurrency: 1,
      onProgress: (p) => {
        if (p.kind === 'part' && p.partNumber === 2 && !swapped) {
          swapped = true;
          // Another client's PUT to the same part, with other bytes, behind this one's back.
          void service.hold(p.jobId, 2, randomBytes(1024));
        }
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect(error).toMatchObject({
      code: 'ChecksumMismatch',
      direction: 'upload',
      jobId: 'job1',
      expected: await crc32Of(bytes),
    });
    expect((error as Error).message).toMatch(/stays UPLOADING/);
    expect(service.jobs.get('job1')!.job.status).toBe('UPLOADING');

    const resumed = await upload(service, { source: bytes, resume: 'job1' });
    expect(resumed).toMatchObject({ partsChanged: 1, partsReused: 3, partsSent: 1 });
    expect(service.assembled('job1').equals(bytes)).toBe(true);
  });

  it('stops reading when the upload is aborted, leaving no read hanging', async () => {
    const service = new FakeService();
    service.takesChecksums = true;
    service.putDelayMs = 5;
    const controller = new AbortController();
    const bytes = randomBytes(100 * 1024);
    const counting = countingSource(bytes, service);
    const error = await upload(service, {
      source: counting.source,
      concurrency: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.kind === 'part' && p.partsDone === 3) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ outcome: 'killed' });
    const readsAtAbort = counting.reads.size;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(counting.reads.size).toBe(readsAtAbort);
    // Parts done, in flight, and read ahead (4 x concurrency) at most.
    expect(readsAtAbort).toBeLessThanOrEqual(3 + 2 + 8);
  });
});

describe('ChecksummedUrlPool', () => {
  const signer = () => {
    const calls: PartToSign[][] = [];
    let fail: Error | undefined;
    const sign = async (parts: PartToSign[]) => {
      calls.push(parts);
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (fail) throw fail;
      return parts.map((part) => ({
        partNumber: part.partNumber,
        url: `u${part.partNumber}/${calls.length}`,
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
        headers: { 'x-amz-checksum-crc32': part.checksum },
      }));
    };
    return {
      calls,
      sign,
      failWith: (error: Error | undefined) => {
        fail = error;
      },
    };
  };

  it('gathers read parts into one request, at once when a PUT waits, and signs them with their checksums', async () => {
    const { calls, sign } = signer();
    const pool = new ChecksummedUrlPool(sign, { minBatch: 3 });
    pool.ready(1, 'c1');
    pool.ready(2, 'c2');
    expect(calls).toEqual([]);
    pool.ready(3, 'c3');
    expect(calls).toEqual([
      [
        { partNumber: 1, checksum: 'c1' },
        { partNumber: 2, checksum: 'c2' },
        { partNumber: 3, checksum: 'c3' },
      ],
    ]);
    // While that one is out, parts gather for the next.
    pool.ready(4, 'c4');
    pool.ready(5, 'c5');
    expect((await pool.signed(1)).headers).toEqual({ 'x-amz-checksum-crc32': 'c1' });
    expect(await pool.signed(5)).toMatchObject({ url: 'u5/2' });
    expect(calls[1]!.map((part) => part.partNumber)).toEqual([4, 5]);
    // A refused URL is signed again with the same checksum.
    pool.invalidate(2);
    expect(await pool.signed(2)).toMatchObject({ url: 'u2/3', headers: { 'x-amz-checksum-crc32': 'c2' } });
    expect(pool.signCalls).toBe(3);
  });

  it('passes a signing failure to the PUT waiting for that part', async () => {
    const { sign, failWith } = signer();
    const pool = new ChecksummedUrlPool(sign);
    failWith(new ApiError(400, 'ValidationError', 'bad checksum'));
    pool.ready(1, 'c1');
    await expect(pool.signed(1)).rejects.toMatchObject({ code: 'ValidationError' });
    failWith(undefined);
    expect(await pool.signed(1)).toMatchObject({ partNumber: 1 });
  });
});
