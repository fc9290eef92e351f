/**
 * Upload throughput: the client library's upload (client/, what the CLI runs: create, part URLs
 * signed in batches ahead of need, parallel PUTs, progress reported beside the transfer, complete)
 * against the AWS SDK's own multipart uploader (@aws-sdk/lib-storage Upload), same bytes, same
 * emulator, same part size and parts in flight, side by side and in alternating order; every
 * stored object checked by sha256. Then the cost of signing 10,000 part URLs, in-process and
 * through the API.
 *
 *   node bench/upload.ts [--size-mib 1024] [--part-mib 8] [--concurrency 8] [--rounds 3]
 *                        [--sign-rounds 3] [--no-sign] [--no-progress] [--verbose]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { type FetchLike, FileJobsClient } from '../client/index.ts';
import { FileStore } from '../lib/storage/file-store.ts';
import { DEMO_USER, localCredentials, startLocalStack } from '../scripts/local-stack.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'part-mib': { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'sign-rounds': { type: 'string', default: '3' },
    'no-sign': { type: 'boolean', default: false },
    'no-progress': { type: 'boolean', default: false },
    // Every service run's calls, by kind; and serverless-offline's log.
    verbose: { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const partSize = Number(values['part-mib']) * MiB;
const concurrency = Number(values.concurrency);
const rounds = Number(values.rounds);
const signRounds = Number(values['sign-rounds']);
const SIGN_PARTS = 10_000;

const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
const mbps = (ms: number) => size / 1e6 / (ms / 1000);
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const best = (list: number[]) => Math.min(...list);

/**
 * Each kind of request a run makes (the library's through its fetch, lib-storage's through the
 * SDK): how many, their average time to the answer's headers, and when the first began and the last
 * ended (seconds from the run's start), so that a run's phases and gaps show.
 */
class CallTrace {
  private readonly calls = new Map<string, { count: number; ms: number; first: number; last: number }>();
  private origin = performance.now();

  private record(kind: string, started: number): void {
    const ended = performance.now();
    const entry = this.calls.get(kind) ?? { count: 0, ms: 0, first: started, last: ended };
    entry.count++;
    entry.ms += ended - started;
    entry.last = Math.max(entry.last, ended);
    this.calls.set(kind, entry);
  }

  readonly fetch: FetchLike = async (url, init) => {
    const started = performance.now();
    try {
      // --no-progress: for finding where time goes, progress reports are answered here, not sent.
      if (values['no-progress'] && url.endsWith('/progress'))
        return new Response(JSON.stringify({ job: {} }), { status: 200 });
      return await globalThis.fetch(url, init);
    } finally {
      const { pathname, searchParams } = new URL(url);
      const path = pathname
        .replace(/\/upload\/[^/]+\//, '/upload/{id}/')
        .replace(/\/jobs\/[^/]+$/, '/jobs/{id}');
      this.record(
        searchParams.has('X-Amz-Signature') ? `S3 ${init.method} part` : `${init.method ?? 'GET'} ${path}`,
        started,
      );
    }
  };

  /** Times the SDK's commands on `s3` (lib-storage's calls) under the same trace. */
  traceSdk(s3: S3Client): void {
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const started = performance.now();
        try {
          return await next(args);
        } finally {
          this.record(`S3 ${context.commandName?.replace(/Command$/, '')}`, started);
        }
      },
      { step: 'initialize', name: 'benchTrace' },
    );
  }

  reset(): void {
    this.calls.clear();
    this.origin = performance.now();
  }

  summary(): string {
    const at = (t: number) => ((t - this.origin) / 1000).toFixed(2);
    return [...this.calls]
      .map(
        ([kind, { count, ms, first, last }]) =>
          `${kind} ×${count}, ${(ms / count).toFixed(0)} ms avg, ${at(first)}-${at(last)} s`,
      )
      .join('\n    ');
  }
}

const keysFile = join(tmpdir(), `file-jobs-bench-keys-${process.pid}.json`);
const loadAtStart = load();
const stack = await startLocalStack({
  stage: 'bench',
  withApi: true,
  keysFile,
  ...(values.verbose ? { log: (line: string) => process.stderr.write(`  | ${line}\n`) } : {}),
});
try {
  const { s3Endpoint, bucket, region } = stack.info;
  const newS3 = () =>
    new S3Client({
      region,
      endpoint: s3Endpoint,
      forcePathStyle: true,
      credentials: {
        accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
        secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
      },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
  const s3 = newS3();
  const trace = new CallTrace();
  // lib-storage's own client, traced like the library's calls.
  const sdkS3 = newS3();
  trace.traceSdk(sdkS3);
  const client = new FileJobsClient({ apiUrl: stack.info.apiUrl!, fetch: trace.fetch });
  await client.signIn(DEMO_USER.username, DEMO_USER.password);

  process.stdout.write(`generating ${size / MiB} MiB of random bytes… `);
  const data = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += 64 * MiB)
    randomFillSync(data, offset, Math.min(64 * MiB, size - offset));
  const digest = (chunks: Iterable<Uint8Array>) => {
    const hash = createHash('sha256');
    for (const chunk of chunks) hash.update(chunk);
    return hash.digest('hex');
  };
  const sourceSha256 = digest(
    Array.from({ length: Math.ceil(size / (64 * MiB)) }, (_, i) =>
      data.subarray(i * 64 * MiB, (i + 1) * 64 * MiB),
    ),
  );
  console.log(`done (sha256 ${sourceSha256.slice(0, 12)}…)`);

  /** Reads the stored object back, checks its size and sha256, and deletes it. */
  async function verify(key: string) {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of object.Body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    const stored = hash.digest('hex');
    if (bytes !== size || stored !== sourceSha256)
      throw new Error(`${key}: ${bytes} bytes sha256 ${stored}, expected ${size} bytes ${sourceSha256}`);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  /** The client library's upload, as the CLI runs it (no progress callback: the CLI's bar costs nothing here). */
  async function clientUpload(filename: string) {
    trace.reset();
    const started = performance.now();
    const result = await client.upload({ source: data, filename, partSize, concurrency, overwrite: true });
    const ms = performance.now() - started;
    if (result.job.status !== 'COMPLETED') throw new Error(`upload ended ${result.job.status}`);
    return {
      ms,
      key: `uploads/${DEMO_USER.username}/${filename}`,
      note: `${result.progressReports} progress reports; ${trace.summary()}`,
    };
  }

  /** The AWS SDK's managed uploader, straight to the same emulator. */
  async function libStorage(filename: string) {
    const key = `uploads/${DEMO_USER.username}/${filename}`;
    trace.reset();
    const started = performance.now();
    await new Upload({
      client: sdkS3,
      params: { Bucket: bucket, Key: key, Body: data },
      queueSize: concurrency,
      partSize,
    }).done();
    return { ms: performance.now() - started, key, note: trace.summary() };
  }

  const runs = { clientUpload: [] as number[], libStorage: [] as number[] };
  for (let round = 1; round <= rounds; round++) {
    // Alternate the order so that neither side always runs on a warmer emulator.
    const order = round % 2 ? [clientUpload, libStorage] : [libStorage, clientUpload];
    for (const run of order) {
      const loadBefore = load();
      const { ms, key, note } = await run(`bench-${run.name}-${round}.bin`);
      const loadAfter = load();
      await verify(key);
      runs[run.name as keyof typeof runs].push(ms);
      console.log(
        `round ${round}  ${run.name.padEnd(12)} ${seconds(ms).padStart(8)}  ${mbps(ms).toFixed(1).padStart(6)} MB/s  sha256 ok  load ${loadBefore} -> ${loadAfter}`,
      );
      if (values.verbose && note) console.log(`    ${note}`);
    }
  }

  // Signing 10,000 part URLs: in-process (the service's FileStore and its signer, 10 batches of
  // 1,000 as the route signs them) and through the API (the client's signParts: 10 calls of 1,000).
  const signing = { inProcess: [] as number[], api: [] as number[], cold: 0 };
  if (!values['no-sign']) {
    const store = new FileStore(s3, s3, bucket);
    const batches = Array.from({ length: SIGN_PARTS / 1000 }, (_, b) =>
      Array.from({ length: 1000 }, (_, i) => ({ partNumber: b * 1000 + i + 1, size: 5 * MiB })),
    );
    const signAll = async () => {
      const started = performance.now();
      for (const batch of batches) await store.presignUploadParts('uploads/x/y', 'upload-id', batch, 900);
      return performance.now() - started;
    };
    signing.cold = await signAll();
    for (let round = 0; round < signRounds; round++) signing.inProcess.push(await signAll());

    const huge = await client.createUpload({
      filename: 'bench-10k.bin',
      size: SIGN_PARTS * 5 * MiB,
      partSize: 5 * MiB,
      overwrite: true,
    });
    const numbers = Array.from({ length: SIGN_PARTS }, (_, i) => i + 1);
    for (let round = 0; round < signRounds; round++) {
      const started = performance.now();
      const signed = await client.signParts(huge.job.jobId, numbers);
      signing.api.push(performance.now() - started);
      if (signed.length !== SIGN_PARTS) throw new Error(`signed ${signed.length} parts`);
    }
    await client.abortUpload(huge.job.jobId);
  }

  const cpu = cpus();
  const ratio = best(runs.libStorage) / best(runs.clientUpload);
  console.log(`
machine: ${cpu[0]?.model} × ${cpu.length}, node ${process.version}, S3 = moto_server, DynamoDB = ${
    stack.info.dynamodbEndpoint === stack.info.s3Endpoint ? 'moto' : 'DynamoDB Local'
  }, API = serverless-offline, all on this machine
load average (1/5/15 min): ${loadAtStart} at the start, ${load()} at the end
${size / MiB} MiB in ${partSize / MiB} MiB parts, ${concurrency} in flight, best of ${rounds}, every object checked by sha256:
  client library upload (client/, as the CLI)   ${mbps(best(runs.clientUpload)).toFixed(1).padStart(6)} MB/s  ${seconds(best(runs.clientUpload))}
  @aws-sdk/lib-storage Upload                   ${mbps(best(runs.libStorage)).toFixed(1).padStart(6)} MB/s  ${seconds(best(runs.libStorage))}
  ratio client / lib-storage                    ${ratio.toFixed(3)}  (goal >= 0.95)`);
  if (!values['no-sign']) {
    console.log(`signing ${SIGN_PARTS.toLocaleString('en')} part URLs (10 × 1,000), best of ${signRounds}:
  in-process (FileStore.presignUploadParts)     ${best(signing.inProcess).toFixed(0).padStart(6)} ms  (goal <= 100; first run, with the probe: ${signing.cold.toFixed(0)} ms)
  through the API (client signParts)            ${best(signing.api).toFixed(0).padStart(6)} ms  (goal <= 300)`);
  }
} finally {
  await stack.stop();
  rmSync(keysFile, { force: true });
}
