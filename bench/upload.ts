/**
 * Upload throughput: the client library's upload (client/, what the CLI runs: create, part URLs
 * signed in batches ahead of need, parallel PUTs, progress reported beside the transfer, complete)
 * against the AWS SDK's own multipart uploader (@aws-sdk/lib-storage Upload), same bytes, same
 * emulator, same part size and parts in flight, side by side and in rotating order; every
 * stored object checked by sha256. The client runs twice per round: with its default S3 checksums
 * (CRC32, or --checksum-algorithm: each part hashed as read, URLs signed with the checksums, the
 * whole-file CRC at completion) and without, so that the checksums' cost shows (goal: under 5%).
 * Then the cost of signing 10,000 part URLs, in-process and through the API.
 *
 *   node bench/upload.ts [--size-mib 1024] [--part-mib 8] [--concurrency 8] [--rounds 3]
 *                        [--checksum-algorithm CRC32] [--sign-rounds 3] [--no-sign]
 *                        [--no-progress] [--verbose]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  checksumHasher,
  type FetchLike,
  FileJobsClient,
} from '../client/index.ts';
import { checksumType } from '../common/checksums.ts';
import { FileStore } from '../lib/storage/file-store.ts';
import { DEMO_USER, localS3Client, startLocalStack } from '../scripts/local-stack.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'part-mib': { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'checksum-algorithm': { type: 'string', default: 'CRC32' },
    'sign-rounds': { type: 'string', default: '3' },
    'no-sign': { type: 'boolean', default: false },
    'no-progress': { type: 'boolean', default: false },
    // Every service run's calls, by kind; and serverless-offline's log.
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`node bench/upload.ts [options]: the client library's upload (with checksums and without) against
@aws-sdk/lib-storage on a local stack it starts (moto, DynamoDB Local, serverless-offline), then 10,000 part URLs signed.
  --size-mib <n>             bytes uploaded per run, in MiB (default 1024)
  --part-mib <n>             part size in MiB (default 8)
  --concurrency <n>          parts in flight (default 8)
  --rounds <n>               rounds of each variant, in rotating order; the best counts (default 3)
  --checksum-algorithm <a>   the client's checksums when on: CRC32, CRC32C, CRC64NVME, SHA256 (default CRC32)
  --sign-rounds <n>          rounds of signing 10,000 URLs (default 3); --no-sign skips them
  --no-progress              progress reports answered in-process, not sent
  --verbose                  each run's calls by kind, and serverless-offline's log`);
  process.exit(0);
}
const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const partSize = Number(values['part-mib']) * MiB;
const concurrency = Number(values.concurrency);
const rounds = Number(values.rounds);
const signRounds = Number(values['sign-rounds']);
const algorithm = values['checksum-algorithm'].toUpperCase() as ChecksumAlgorithm;
if (!CHECKSUM_ALGORITHMS.includes(algorithm)) {
  console.error(`--checksum-algorithm: one of ${CHECKSUM_ALGORITHMS.join(', ')}`);
  process.exit(2);
}
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

  /** When the last part upload ended, in ms from the run's start: the transfer phase, before completion. */
  partsDone(): number {
    const parts = [...this.calls].filter(([kind]) => kind.endsWith(' part') || kind === 'S3 UploadPart');
    return Math.max(0, ...parts.map(([, { last }]) => last - this.origin));
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
  const { bucket } = stack.info;
  const newS3 = (checksums: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED' = 'WHEN_REQUIRED') =>
    localS3Client(stack.info, { requestChecksumCalculation: checksums });
  const s3 = newS3();
  const trace = new CallTrace();
  // lib-storage's own clients, traced like the library's calls: one without checksums (the S3 client
  // the service presigns with), and one with the SDK's default checksum mode (WHEN_SUPPORTED: the SDK
  // computes each part's CRC and S3 checks it).
  const sdkS3 = newS3();
  trace.traceSdk(sdkS3);
  const sdkS3Checksums = newS3('WHEN_SUPPORTED');
  trace.traceSdk(sdkS3Checksums);
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
  async function upload(filename: string, checksumAlgorithm: ChecksumAlgorithm | false, source = data) {
    trace.reset();
    const started = performance.now();
    const result = await client.upload({
      source,
      filename,
      partSize,
      concurrency,
      overwrite: true,
      checksumAlgorithm,
    });
    const ms = performance.now() - started;
    if (result.job.status !== 'COMPLETED') throw new Error(`upload ended ${result.job.status}`);
    if (result.checksumAlgorithm !== (checksumAlgorithm || undefined))
      throw new Error(`uploaded with checksums ${result.checksumAlgorithm}, not ${checksumAlgorithm}`);
    return {
      ms,
      key: `uploads/${DEMO_USER.username}/${filename}`,
      note: `${result.progressReports} progress reports; ${trace.summary()}`,
      partsDoneMs: trace.partsDone(),
    };
  }
  /** The client with its default checksums (or --checksum-algorithm's). */
  const clientUpload = (filename: string, source = data) => upload(filename, algorithm, source);
  /** The client with checksums off: what they cost is the difference. */
  const clientNoChecksum = (filename: string, source = data) => upload(filename, false, source);

  /**
   * The AWS SDK's managed uploader, straight to the same emulator. With `algorithm` it asks for what
   * the client's default gives: a FULL_OBJECT checksum (the stored object's CRC is the file's CRC),
   * each part's CRC computed by the SDK and checked by S3. (The SDK's own default is a COMPOSITE CRC32,
   * a checksum of the parts' checksums, which no one can compare with a file's CRC; on moto it is also
   * much cheaper to complete, since moto then hashes no whole object.)
   */
  async function libStorageWith(
    s3Client: S3Client,
    filename: string,
    checksums: ChecksumAlgorithm | false,
    body = data,
  ) {
    const key = `uploads/${DEMO_USER.username}/${filename}`;
    trace.reset();
    const started = performance.now();
    await new Upload({
      client: s3Client,
      params: {
        Bucket: bucket,
        Key: key,
        Body: body,
        ...(checksums ? { ChecksumAlgorithm: checksums, ChecksumType: checksumType(checksums) } : {}),
      },
      queueSize: concurrency,
      partSize,
    }).done();
    return { ms: performance.now() - started, key, note: trace.summary(), partsDoneMs: trace.partsDone() };
  }
  const libStorage = (filename: string, source = data) => libStorageWith(sdkS3, filename, false, source);
  const libStorageChecksums = (filename: string, source = data) =>
    libStorageWith(sdkS3Checksums, filename, algorithm, source);

  // Per run: the whole upload's time, and the transfer phase's (until the last part's answer; the rest
  // is completion, which moto does in Python over the whole object and S3 does in about constant time).
  type Timings = { ms: number[]; transfer: number[] };
  const timings = (): Timings => ({ ms: [], transfer: [] });
  const runs = {
    clientUpload: timings(),
    clientNoChecksum: timings(),
    libStorageChecksums: timings(),
    libStorage: timings(),
  };
  const runners = [
    { name: 'clientUpload', run: clientUpload },
    { name: 'libStorageChecksums', run: libStorageChecksums },
    { name: 'clientNoChecksum', run: clientNoChecksum },
    { name: 'libStorage', run: libStorage },
  ] as const;
  // Warm-up, untimed: each runner once on 64 MiB, so that no first round pays for cold code paths
  // (serverless-offline's first load of a handler, the SDK's, moto's first multipart upload).
  process.stdout.write('warming up… ');
  for (const { name, run } of runners) {
    const { key } = await run(`bench-warm-${name}.bin`, data.subarray(0, 64 * MiB));
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }
  // Then once at full size: moto's completion of the same 512 MiB took 3.5-7 s within one run, the
  // first ones on a freshly started machine the slowest (bench/README.md, exports), and a round
  // that ran first paid for it.
  const warm = await libStorage('bench-warm-full.bin');
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: warm.key }));
  console.log(`done (the full-size warm-up took ${seconds(warm.ms)})`);
  for (let round = 1; round <= rounds; round++) {
    // Rotate the order so that no side always runs on a warmer (or more tired) emulator.
    const order = runners.map((_, i) => runners[(i + round - 1) % runners.length]!);
    for (const { name, run } of order) {
      const loadBefore = load();
      const { ms, key, note, partsDoneMs } = await run(`bench-${name}-${round}.bin`);
      const loadAfter = load();
      await verify(key);
      runs[name].ms.push(ms);
      runs[name].transfer.push(partsDoneMs);
      console.log(
        `round ${round}  ${name.padEnd(19)} ${seconds(ms).padStart(8)}  ${mbps(ms).toFixed(1).padStart(6)} MB/s  (parts done at ${seconds(partsDoneMs)})  sha256 ok  load ${loadBefore} -> ${loadAfter}`,
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
  // The client's own share of the checksums' cost: hashing the file once, as the upload does part by
  // part. The rest of the difference is the emulator's (moto computes and stores each part's and
  // the object's checksum in Python) and the signing requests.
  const hashStarted = performance.now();
  const hasher = checksumHasher(algorithm);
  for (let offset = 0; offset < size; offset += partSize)
    hasher.update(data.subarray(offset, offset + partSize));
  await hasher.digest();
  const hashMs = performance.now() - hashStarted;
  const whole = (name: keyof typeof runs) => best(runs[name].ms);
  const transfer = (name: keyof typeof runs) => best(runs[name].transfer);
  const ratio = whole('libStorageChecksums') / whole('clientUpload');
  const ratioNoChecksum = whole('libStorage') / whole('clientNoChecksum');
  const transferRatio = transfer('libStorageChecksums') / transfer('clientUpload');
  const transferRatioNoChecksum = transfer('libStorage') / transfer('clientNoChecksum');
  const checksumCost = 1 - whole('clientNoChecksum') / whole('clientUpload');
  const sdkChecksumCost = 1 - whole('libStorage') / whole('libStorageChecksums');
  const row = (label: string, name: keyof typeof runs, note: string) =>
    `  ${label.padEnd(46)}${mbps(whole(name)).toFixed(1).padStart(6)} MB/s  ${seconds(whole(name)).padStart(8)}  parts done ${seconds(transfer(name)).padStart(8)}  ${note}`;
  console.log(`
machine: ${cpu[0]?.model} × ${cpu.length}, node ${process.version}, S3 = moto_server, DynamoDB = ${
    stack.info.dynamodbEndpoint === stack.info.s3Endpoint ? 'moto' : 'DynamoDB Local'
  }, API = serverless-offline, all on this machine
load average (1/5/15 min): ${loadAtStart} at the start, ${load()} at the end
${size / MiB} MiB in ${partSize / MiB} MiB parts, ${concurrency} in flight, best of ${rounds}, every object checked by sha256:
${row('client library upload (client/, as the CLI)', 'clientUpload', `(${algorithm} ${checksumType(algorithm)}, the default)`)}
${row('@aws-sdk/lib-storage Upload, same checksums', 'libStorageChecksums', `(${algorithm} ${checksumType(algorithm)})`)}
${row('client library upload, --no-checksum', 'clientNoChecksum', '')}
${row('@aws-sdk/lib-storage Upload, no checksums', 'libStorage', '(requestChecksumCalculation WHEN_REQUIRED)')}
  ratio client / lib-storage, with checksums    ${ratio.toFixed(3)}  (goal >= 0.95); transfer phase alone ${transferRatio.toFixed(3)}
  ratio client / lib-storage, no checksums      ${ratioNoChecksum.toFixed(3)}  (goal >= 0.95); transfer phase alone ${transferRatioNoChecksum.toFixed(3)}
  ratio client with ${algorithm} / lib-storage without  ${(whole('libStorage') / whole('clientUpload')).toFixed(3)}  (what earlier runs reported: unlike work on each side)
  ${`${algorithm} checksum cost (1 - off/on time)`.padEnd(46)}${(checksumCost * 100).toFixed(1).padStart(5)} %  client (goal < 5%); lib-storage ${(sdkChecksumCost * 100).toFixed(1)} %
  of which the client's hashing of the file     ${hashMs.toFixed(0).padStart(6)} ms  = ${((hashMs / whole('clientUpload')) * 100).toFixed(1)} % of the upload's time`);
  if (!values['no-sign']) {
    console.log(`signing ${SIGN_PARTS.toLocaleString('en')} part URLs (10 × 1,000), best of ${signRounds}:
  in-process (FileStore.presignUploadParts)     ${best(signing.inProcess).toFixed(0).padStart(6)} ms  (goal <= 100; first run, with the probe: ${signing.cold.toFixed(0)} ms)
  through the API (client signParts)            ${best(signing.api).toFixed(0).padStart(6)} ms  (goal <= 300)`);
  }
} finally {
  await stack.stop();
  rmSync(keysFile, { force: true });
}
