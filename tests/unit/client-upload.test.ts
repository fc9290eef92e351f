import { createHash, randomBytes } from 'node:crypto';
import {
  AbortedError,
  ApiError,
  type CreatedUpload,
  type CreateUploadInput,
  type FinishedPart,
  type Job,
  type ReconciledJob,
  type SignedPart,
  TransferError,
  type UploadProgress,
} from '../../client/index.ts';
import { PartUrlPool } from '../../client/parts.ts';
import { runUpload, type UploadApi, type UploadOptions } from '../../client/upload.ts';

/**
 * The service and S3 in memory, behind the same interface the client uses: jobs, presigned URLs
 * (fake://s3/<jobId>/<part>), part PUTs with scripted failures, progress, completion, abort.
 */
class FakeService implements UploadApi {
  readonly jobs = new Map<string, { job: Job; parts: Map<number, Uint8Array> }>();
  readonly calls = { create: 0, sign: [] as number[][], progress: [] as number[][], complete: 0, abort: 0 };
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

  newJob(filename: string, size: number, partSize = this.partSize): Job {
    const jobId = `job${this.nextId++}`;
    const partCount = Math.ceil(size / partSize);
    const job: Job = {
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
    this.jobs.set(jobId, { job, parts: new Map() });
    return job;
  }

  private sign(jobId: string, partNumbers: number[]): SignedPart[] {
    const expiresAt = new Date(Date.now() + this.urlLifetimeMs).toISOString();
    return partNumbers.map((partNumber) => ({
      partNumber,
      url: `fake://s3/${jobId}/${partNumber}`,
      expiresAt,
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
    const job = this.newJob(input.filename, input.size, input.partSize);
    const first = Array.from({ length: Math.min(job.partCount, 100) }, (_, index) => index + 1);
    return {
      job,
      uploadId: 'u',
      key: `uploads/me/${job.filename}`,
      partSize: job.partSize,
      partCount: job.partCount,
      parts: this.sign(job.jobId, first),
    };
  }

  async reconcileUpload(jobId: string): Promise<ReconciledJob> {
    const { job, parts } = this.entry(jobId);
    const all = Array.from({ length: job.partCount }, (_, index) => index + 1);
    return {
      job,
      uploadedParts: all.filter((n) => parts.has(n)),
      missingParts: all.filter((n) => !parts.has(n)),
    };
  }

  async signParts(jobId: string, partNumbers: number[]): Promise<SignedPart[]> {
    this.calls.sign.push(partNumbers);
    return this.sign(jobId, partNumbers);
  }

  async reportProgress(jobId: string, parts: FinishedPart[]): Promise<Job> {
    this.calls.progress.push(parts.map((part) => part.partNumber));
    if (this.progressDelayMs) await new Promise((resolve) => setTimeout(resolve, this.progressDelayMs));
    const { job } = this.entry(jobId);
    if (job.status !== 'UPLOADING')
      throw new ApiError(409, 'JobNotActive', `upload ${jobId} is ${job.status}`);
    return job;
  }

  async completeUpload(jobId: string): Promise<Job> {
    this.calls.complete++;
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
