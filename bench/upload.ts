/**
 * Upload throughput: the service's flow against the AWS SDK's own multipart uploader, same bytes,
 * same emulator, same part size and concurrency; plus the cost of signing 10,000 part URLs.
 *
 *   node bench/upload.ts [--size-mib 1024] [--part-mib 8] [--concurrency 8] [--rounds 2]
 */
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { FileStore } from '../lib/storage/file-store.ts';
import { DEMO_USER, localCredentials, startLocalStack } from '../scripts/local-stack.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'part-mib': { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
    // For finding where time goes: the service flow without any progress reports.
    'no-progress': { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const partSize = Number(values['part-mib']) * MiB;
const concurrency = Number(values.concurrency);
const rounds = Number(values.rounds);
const reportProgress = !values['no-progress'];

interface Part {
  partNumber: number;
  etag: string;
  size: number;
}

/** Sends finished parts in batches: one request in flight, the next carries all that piled up. */
class ProgressReporter {
  private queue: Part[] = [];
  private inFlight: Promise<void> | undefined;
  private readonly send: (parts: Part[]) => Promise<unknown>;
  constructor(send: (parts: Part[]) => Promise<unknown>) {
    this.send = send;
  }
  add(part: Part) {
    this.queue.push(part);
    this.inFlight ??= this.drain();
  }
  private async drain() {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, 1000);
      await this.send(batch);
    }
    this.inFlight = undefined;
  }
  async flush() {
    while (this.inFlight) await this.inFlight;
  }
}

const keysFile = join(tmpdir(), `file-jobs-bench-keys-${process.pid}.json`);
const stack = await startLocalStack({ stage: 'bench', withApi: true, keysFile });
try {
  const { apiUrl, s3Endpoint, bucket, region } = { ...stack.info, apiUrl: stack.info.apiUrl! };
  const credentials = {
    accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
    secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
  };
  const s3 = new S3Client({
    region,
    endpoint: s3Endpoint,
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });

  const call = async (path: string, token: string, method = 'GET', body?: unknown) => {
    const response = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json()) as any;
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const signin = await fetch(`${apiUrl}/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(DEMO_USER),
  });
  const { token } = (await signin.json()) as { token: string };

  process.stdout.write(`generating ${size / MiB} MiB of random bytes… `);
  const data = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += 64 * MiB)
    randomFillSync(data, offset, Math.min(64 * MiB, size - offset));
  console.log('done');

  /** The service's flow, as a client of it runs it: create, sign, parallel PUTs with progress, complete. */
  async function viaService(filename: string) {
    const started = performance.now();
    const created = await call('/upload', token, 'POST', { filename, size, partSize, overwrite: true });
    const urls = new Map<number, string>(created.parts.map((part: any) => [part.partNumber, part.url]));
    const unsigned = Array.from({ length: created.partCount }, (_, i) => i + 1).filter((n) => !urls.has(n));
    for (let i = 0; i < unsigned.length; i += 1000) {
      const signed = await call(`/upload/${created.job.jobId}/parts`, token, 'POST', {
        partNumbers: unsigned.slice(i, i + 1000),
      });
      for (const part of signed.parts) urls.set(part.partNumber, part.url);
    }
    let next = 1;
    // Progress is reported beside the transfer, not in its way, and in batches, as a good client
    // does: at most one report in flight, carrying every part finished since the last one.
    const progress = new ProgressReporter((parts) =>
      call(`/upload/${created.job.jobId}/progress`, token, 'POST', { parts }),
    );
    const worker = async () => {
      while (next <= created.partCount) {
        const partNumber = next++;
        const body = data.subarray((partNumber - 1) * partSize, Math.min(size, partNumber * partSize));
        const response = await fetch(urls.get(partNumber)!, { method: 'PUT', body });
        if (!response.ok) throw new Error(`PUT part ${partNumber}: ${response.status}`);
        await response.arrayBuffer();
        if (reportProgress)
          progress.add({ partNumber, etag: response.headers.get('etag')!, size: body.length });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await progress.flush();
    const done = await call(`/upload/${created.job.jobId}/complete`, token, 'POST');
    if (done.job?.status !== 'COMPLETED') throw new Error(`completion answered ${JSON.stringify(done)}`);
    return performance.now() - started;
  }

  /** The AWS SDK's managed uploader straight to the same emulator. */
  async function viaSdk(filename: string) {
    const started = performance.now();
    await new Upload({
      client: s3,
      params: { Bucket: bucket, Key: `uploads/${DEMO_USER.username}/${filename}`, Body: data },
      queueSize: concurrency,
      partSize,
    }).done();
    return performance.now() - started;
  }

  const mbps = (ms: number) => size / 1e6 / (ms / 1000);
  const service: number[] = [];
  const sdk: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Alternate the order so that neither side always runs on a warmer emulator.
    const order = round % 2 ? ([viaService, viaSdk] as const) : ([viaSdk, viaService] as const);
    for (const run of order) {
      const ms = await run(`bench-${run.name}-${round}.bin`);
      (run === viaService ? service : sdk).push(ms);
      console.log(
        `round ${round}  ${run.name.padEnd(10)} ${(ms / 1000).toFixed(2)} s  ${mbps(ms).toFixed(1)} MB/s`,
      );
    }
  }
  const best = (list: number[]) => Math.min(...list);

  // Signing 10,000 part URLs: in-process (the presigner alone) and through the API (10 calls of 1,000).
  const store = new FileStore(s3, s3, bucket);
  const signStart = performance.now();
  await Promise.all(
    Array.from({ length: 10_000 }, (_, i) =>
      store.presignUploadPart('uploads/x/y', 'upload-id', { partNumber: i + 1, size: 8 * MiB }, 900),
    ),
  );
  const signLocalMs = performance.now() - signStart;
  const huge = await call('/upload', token, 'POST', {
    filename: 'bench-10k.bin',
    size: 10_000 * 5 * MiB,
    partSize: 5 * MiB,
    overwrite: true,
  });
  const apiSignStart = performance.now();
  for (let start = 1; start <= 10_000; start += 1000) {
    await call(`/upload/${huge.job.jobId}/parts`, token, 'POST', {
      partNumbers: Array.from({ length: 1000 }, (_, i) => start + i),
    });
  }
  const signApiMs = performance.now() - apiSignStart;
  await call(`/upload/${huge.job.jobId}`, token, 'DELETE');

  const cpu = cpus();
  console.log(`
machine: ${cpu[0]?.model} × ${cpu.length}, node ${process.version}, S3 = moto_server, DynamoDB = ${stack.info.dynamodbEndpoint === stack.info.s3Endpoint ? 'moto' : 'DynamoDB Local'}
${size / MiB} MiB in ${partSize / MiB} MiB parts, ${concurrency} in flight, best of ${rounds}:
  service flow (create, sign, PUTs${reportProgress ? ' + batched progress' : ', no progress'}, complete)  ${mbps(best(service)).toFixed(1)} MB/s
  @aws-sdk/lib-storage Upload, same emulator                       ${mbps(best(sdk)).toFixed(1)} MB/s
  ratio service / SDK                                              ${(best(sdk) / best(service)).toFixed(3)}
signing 10,000 part URLs (10 × 1,000): in-process ${signLocalMs.toFixed(0)} ms; through the API ${signApiMs.toFixed(0)} ms`);
} finally {
  await stack.stop();
  rmSync(keysFile, { force: true });
}
