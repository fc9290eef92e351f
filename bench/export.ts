/**
 * Export throughput: POST /export (raw and gzip) through the API, timed from the POST to SUCCEEDED,
 * against baselines on the same emulator and the same bytes: `aws s3 cp` between two prefixes (a
 * server-side multipart copy, like the raw export), local `gzip -1` / `gzip -6` (the one-core
 * compression limit) and `pigz -6` on every core (the multi-core limit the gzip export aims at;
 * Debian's `pigz` package), alone and on the export's own path (`aws s3 cp` from the same S3, through
 * pigz, back with the export's part size). Every export's output is downloaded through its
 * download URL and checked byte for byte (sha256) against the source.
 *
 * The export asks S3 for a CRC32 FULL_OBJECT checksum (the object's CRC is the file's CRC). moto
 * completes such an upload by concatenating the whole object twice more and hashing it: 1.6-1.8 s
 * of a 512 MiB completion here, whose whole takes 3.5-7 s (the first ones in a fresh machine
 * slowest). The CLI's multipart copy asks for no checksum, which moto completes the same way; its
 * streaming upload (the pigz path) asks for a COMPOSITE CRC32, which moto completes without that
 * work. So the pigz path has a like-for-like twin whose output lib-storage writes with the export's
 * checksum, and the copy has a twin through the SDK (UploadPartCopy, the export's part size, the
 * CLI's 10 in flight, the export's checksum) that shows what the CLI itself costs. The gzip goal
 * ratio is taken against the twin; the CLI's is printed beside it. `gzip -6` on one core has the
 * same twin (`aws s3 cp … - | gzip -6`, lib-storage back), for the export's other gzip goal.
 *
 *   node bench/export.ts [--size-mib 1024] [--rounds 2]
 *     --no-text            only the random source (skip the compressible text one)
 *     --skip-baselines     exports only (for quick variants)
 *     --export-part-mib N  run the stack with EXPORT_PART_SIZE_MIB=N (default: the stack's, 64)
 *     --verbose            show the stack's log
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { GZIP_SLICE_TARGET, gzip } from '../lib/exports/gzip-members.ts';
import { DEMO_USER, localCredentials, localS3Client, startLocalStack } from '../scripts/local-stack.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '2' },
    'no-text': { type: 'boolean', default: false },
    'skip-baselines': { type: 'boolean', default: false },
    'export-part-mib': { type: 'string' },
    'timeout-s': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const rounds = Number(values.rounds);
const withText = !values['no-text'];
const withBaselines = !values['skip-baselines'];
const exportPartMib = values['export-part-mib'];
// Generous: well under 1 MB/s would already be a failure worth seeing.
const timeoutMs = Number(values['timeout-s'] ?? Math.max(600, (size / MiB) * 1.5)) * 1000;
const user = DEMO_USER.username;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
const loadBefore = load();

interface Source {
  label: 'random' | 'text';
  filename: string;
  key: string;
  data: Buffer;
  sha256: string;
  /** The same bytes on local disk, for the gzip baselines. */
  file: string;
}

/** Log-like lines with counters and random ids: compresses about as well as real logs. */
function textBytes(total: number): Buffer {
  const out = Buffer.allocUnsafe(total);
  let state = 0x2545f491;
  const next = () => {
    // xorshift32: fast, deterministic, good enough to make ids that do not repeat.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const levels = ['INFO ', 'INFO ', 'INFO ', 'DEBUG', 'WARN ', 'ERROR'];
  const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
  const statuses = [200, 200, 200, 200, 201, 204, 304, 404, 500];
  let written = 0;
  let time = Date.UTC(2025, 0, 1);
  while (written < total) {
    let chunk = '';
    for (let i = 0; i < 20_000; i++) {
      const r = next();
      time += r % 50;
      chunk += `${new Date(time).toISOString()} ${levels[r % 6]} ${methods[(r >>> 3) % 6]} /api/v1/items/${
        (r >>> 6) % 5000
      } user=u${((r >>> 9) % 1000).toString().padStart(4, '0')} status=${statuses[(r >>> 4) % 9]} bytes=${
        (r >>> 11) % 65536
      } ms=${(r >>> 20) % 300} req=${next().toString(16).padStart(8, '0')}${next().toString(16).padStart(8, '0')}\n`;
    }
    written += out.write(chunk, written, 'latin1');
  }
  return out;
}

const sha256 = (data: Buffer) => {
  const hash = createHash('sha256');
  for (let offset = 0; offset < data.length; offset += 64 * MiB)
    hash.update(data.subarray(offset, offset + 64 * MiB));
  return hash.digest('hex');
};

/** Runs a command, returns its wall time; fails on a non-zero exit. */
function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

function motoVersion(): string {
  const result = spawnSync('python3', ['-c', 'import moto; print(moto.__version__)'], { encoding: 'utf8' });
  return result.status === 0 ? ` ${result.stdout.trim()}` : '';
}

const logTail: string[] = [];
const remember = (line: string) => {
  if (values.verbose) process.stderr.write(`  | ${line}\n`);
  logTail.push(line);
  if (logTail.length > 40) logTail.shift();
};

const keysFile = join(tmpdir(), `file-jobs-bench-keys-${process.pid}.json`);
const stack = await startLocalStack({
  stage: 'bench',
  withApi: true,
  keysFile,
  log: remember,
  ...(exportPartMib ? { env: { EXPORT_PART_SIZE_MIB: exportPartMib } } : {}),
}).catch((error) => {
  rmSync(keysFile, { force: true });
  if (!values.verbose) console.error(`last lines of the stack's log:\n${logTail.join('\n')}`);
  throw error;
});
const scratch = mkdtempSync(join(tmpdir(), 'file-jobs-bench-export-'));
try {
  const { apiUrl, s3Endpoint, bucket, region } = { ...stack.info, apiUrl: stack.info.apiUrl! };
  const s3 = localS3Client(stack.info);

  const signin = await fetch(`${apiUrl}/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(DEMO_USER),
  });
  const { token } = (await signin.json()) as { token: string };
  const call = async (path: string, method = 'GET', body?: unknown) => {
    const response = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json()) as any;
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };

  /** Straight into the bucket, as a finished upload leaves it (a multipart object). */
  async function put(key: string, data: Buffer) {
    await new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: data },
      partSize: 64 * MiB,
      queueSize: 4,
    }).done();
  }

  async function makeSource(label: Source['label'], filename: string): Promise<Source> {
    let started = performance.now();
    process.stdout.write(`${label} source: generating ${size / MiB} MiB… `);
    let data: Buffer;
    if (label === 'random') {
      data = Buffer.allocUnsafe(size);
      for (let offset = 0; offset < size; offset += 64 * MiB)
        randomFillSync(data, offset, Math.min(64 * MiB, size - offset));
    } else {
      data = textBytes(size);
    }
    const hash = sha256(data);
    const file = join(scratch, filename);
    writeFileSync(file, data);
    process.stdout.write(`${((performance.now() - started) / 1000).toFixed(1)} s; putting it in S3… `);
    started = performance.now();
    const key = `uploads/${user}/${filename}`;
    await put(key, data);
    console.log(`${((performance.now() - started) / 1000).toFixed(1)} s (sha256 ${hash.slice(0, 12)}…)`);
    return { label, filename, key, data, sha256: hash, file };
  }

  interface ExportRun {
    ms: number;
    /** POST answered, first seen RUNNING, all bytes done, SUCCEEDED: ms from the POST (to the 100 ms poll). */
    phases: {
      posted: number;
      running?: number;
      firstPart?: number;
      /** bytesDone when the first part was seen: the steady rate counts only the bytes after it. */
      firstPartBytes?: number;
      allBytes?: number;
      succeeded: number;
    };
    partSize: number;
    partCount: number;
    outputSize: number;
    verifyMs: number;
  }

  /** Downloads the export through its URL and checks it against the source (gunzipping gzip). */
  async function verify(source: Source, format: 'raw' | 'gzip', downloadUrl: string) {
    const started = performance.now();
    // node:http rather than fetch: undici trips an assertion (`!this.paused`) when moto closes the
    // connection while a slow consumer (gunzip) holds the body back.
    const body = await new Promise<IncomingMessage>((resolve, reject) =>
      httpGet(downloadUrl, { agent: false }, resolve).on('error', reject),
    );
    if (body.statusCode !== 200) throw new Error(`download answered ${body.statusCode}`);
    const hash = createHash('sha256');
    let bytes = 0;
    const sink = async (stream: AsyncIterable<Buffer>) => {
      for await (const chunk of stream) {
        hash.update(chunk);
        bytes += chunk.length;
      }
    };
    if (format === 'gzip') await pipeline(body, createGunzip(), sink);
    else await pipeline(body, sink);
    const digest = hash.digest('hex');
    if (bytes !== size || digest !== source.sha256)
      throw new Error(
        `${format} export of ${source.label}: got ${bytes} bytes sha256 ${digest}, expected ${size} bytes ${source.sha256}`,
      );
    return performance.now() - started;
  }

  async function deletePrefix(prefix: string) {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const objects = (listed.Contents ?? []).map(({ Key }) => ({ Key: Key! }));
    if (objects.length > 0)
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects } }));
  }

  /** POST /export, poll GET /jobs/{jobId} every 100 ms until SUCCEEDED, then verify the output. */
  async function runExport(source: Pick<Source, 'filename' | 'label' | 'sha256'>, format: 'raw' | 'gzip') {
    const started = performance.now();
    const since = () => performance.now() - started;
    const created = await call('/export', 'POST', { filename: source.filename, format });
    const jobId: string = created.job.jobId;
    const phases: ExportRun['phases'] = { posted: since(), succeeded: 0 };
    let job: any;
    for (;;) {
      const answer = await call(`/jobs/${jobId}`);
      if (!answer?.job?.progress) throw new Error(`GET /jobs/${jobId} answered ${JSON.stringify(answer)}`);
      job = answer.job;
      const at = since();
      if (job.status === 'RUNNING') phases.running ??= at;
      if (job.progress.bytesDone > 0 && phases.firstPart === undefined) {
        phases.firstPart = at;
        phases.firstPartBytes = job.progress.bytesDone;
      }
      if (job.progress.bytesDone >= job.size) phases.allBytes ??= at;
      if (job.status === 'SUCCEEDED') {
        phases.succeeded = at;
        break;
      }
      if (['FAILED', 'CANCELLED', 'CANCELLING', 'EXPIRED'].includes(job.status))
        throw new Error(`${format} export of ${source.label} ended ${job.status}: ${JSON.stringify(job)}`);
      if (at > timeoutMs) {
        await call(`/export/${jobId}`, 'DELETE').catch(() => {});
        throw new Error(
          `${format} export of ${source.label} not done after ${timeoutMs / 1000} s: ${JSON.stringify(job)}`,
        );
      }
      await sleep(100);
    }
    const ms = phases.succeeded;
    if (format === 'raw' && job.outputSize !== job.size)
      throw new Error(`raw export: outputSize ${job.outputSize}, source ${job.size}`);
    const verifyMs = await verify(source as Source, format, job.downloadUrl);
    await deletePrefix(`exports/${user}/${jobId}/`);
    return {
      ms,
      phases,
      partSize: job.partSize,
      partCount: job.partCount,
      outputSize: job.outputSize,
      verifyMs,
    } satisfies ExportRun;
  }

  const describePhases = ({ phases }: ExportRun) => {
    const s = (ms: number | undefined) => (ms === undefined ? '?' : `${(ms / 1000).toFixed(1)}`);
    const steady =
      phases.firstPart !== undefined && phases.allBytes !== undefined && phases.allBytes > phases.firstPart
        ? ` (${mbps(size - (phases.firstPartBytes ?? 0), phases.allBytes - phases.firstPart).toFixed(0)} MB/s between them)`
        : '';
    return `POST answered ${s(phases.posted)} s, RUNNING by ${s(phases.running)}, first part by ${s(
      phases.firstPart,
    )}, all bytes by ${s(phases.allBytes)}${steady}, SUCCEEDED ${s(phases.succeeded)}`;
  };

  // Sources, and a warm-up export of a small file so that no round pays the worker's first start.
  const sources: Source[] = [await makeSource('random', 'bench-source.bin')];
  if (withText) sources.push(await makeSource('text', 'bench-source.txt'));
  {
    const filename = 'bench-warmup.bin';
    await put(`uploads/${user}/${filename}`, randomFillSync(Buffer.allocUnsafe(MiB)));
    for (const format of ['raw', 'gzip'] as const) {
      const started = performance.now();
      const created = await call('/export', 'POST', { filename, format });
      let job: any;
      do {
        await sleep(100);
        ({ job } = await call(`/jobs/${created.job.jobId}`));
        if (['FAILED', 'CANCELLED', 'EXPIRED'].includes(job.status) || performance.now() - started > 120_000)
          throw new Error(`warm-up ${format} export: ${JSON.stringify(job)}`);
      } while (job.status !== 'SUCCEEDED');
      console.log(
        `warm-up: ${format} export of 1 MiB ${((performance.now() - started) / 1000).toFixed(2)} s (the worker's first start)`,
      );
    }
  }

  // The baselines' settings: the CLI's defaults (8 MiB parts, 10 in flight), and the export's part size.
  const awsEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: localCredentials.AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: localCredentials.AWS_SECRET_ACCESS_KEY,
    AWS_DEFAULT_REGION: region,
    AWS_CONFIG_FILE: join(scratch, 'aws-config-default'),
    AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'aws-credentials-none'),
  };
  writeFileSync(awsEnv.AWS_CONFIG_FILE, '[default]\n');
  const exportPartSize = Number(stack.handlerEnv.EXPORT_PART_SIZE_MIB ?? 64) * MiB;
  const awsEnvBigParts = { ...awsEnv, AWS_CONFIG_FILE: join(scratch, 'aws-config-big-parts') };
  writeFileSync(
    awsEnvBigParts.AWS_CONFIG_FILE,
    `[default]\ns3 =\n  multipart_chunksize = ${Math.max(5, exportPartSize / MiB)}MB\n`,
  );
  const copyKey = 'bench-copy/bench-source.bin';
  async function awsCopy(env: NodeJS.ProcessEnv) {
    const ms = await timed(
      'aws',
      [
        '--endpoint-url',
        s3Endpoint,
        's3',
        'cp',
        `s3://${bucket}/${sources[0]!.key}`,
        `s3://${bucket}/${copyKey}`,
        '--only-show-errors',
      ],
      env,
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: copyKey }));
    if (head.ContentLength !== size) throw new Error(`aws s3 cp left ${head.ContentLength} bytes`);
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: copyKey }] } }));
    return ms;
  }

  // What the export asks S3 for, so that moto does the same work for both (see the header).
  const LIKE_FOR_LIKE = { ChecksumAlgorithm: 'CRC32', ChecksumType: 'FULL_OBJECT' } as const;
  const COPY_CONCURRENCY = 10; // the CLI's max_concurrent_requests

  /** A server-side multipart copy through the SDK: the raw export's S3 calls, the CLI's concurrency. */
  async function sdkCopy() {
    const started = performance.now();
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: copyKey, ...LIKE_FOR_LIKE }),
    );
    const count = Math.ceil(size / exportPartSize);
    const parts: { PartNumber: number; ETag: string }[] = [];
    let next = 0;
    const copyParts = async () => {
      while (next < count) {
        const index = next++;
        const start = index * exportPartSize;
        const end = Math.min(size, start + exportPartSize) - 1;
        const copied = await s3.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: copyKey,
            UploadId,
            PartNumber: index + 1,
            CopySource: `${bucket}/${sources[0]!.key}`,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        );
        parts[index] = { PartNumber: index + 1, ETag: copied.CopyPartResult!.ETag! };
      }
    };
    await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, count) }, copyParts));
    const copiedMs = performance.now() - started;
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: copyKey,
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    const ms = performance.now() - started;
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: copyKey }));
    if (head.ContentLength !== size) throw new Error(`the SDK copy left ${head.ContentLength} bytes`);
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: copyKey }] } }));
    return { ms, copiedMs };
  }

  interface Task {
    name: string;
    /** `transferMs`: until the last part was in S3, before the completion (moto's, and noisy). */
    run: () => Promise<{ ms: number; note: string; detail?: ExportRun; transferMs?: number }>;
  }
  const tasks: Task[] = [];
  for (const source of sources) {
    const formats = source.label === 'random' ? (['raw', 'gzip'] as const) : (['gzip'] as const);
    for (const format of formats) {
      tasks.push({
        name: `export ${format} (${source.label})`,
        run: async () => {
          const detail = await runExport(source, format);
          const ratio = format === 'gzip' ? ` (${((100 * detail.outputSize) / size).toFixed(1)} %)` : '';
          return {
            ms: detail.ms,
            detail,
            note: `${detail.partCount} × ${detail.partSize / MiB} MiB, outputSize ${detail.outputSize}${ratio}, verified (sha256) in ${(detail.verifyMs / 1000).toFixed(1)} s`,
          };
        },
      });
    }
  }
  const cores = availableParallelism();
  const SDK_COPY = `SDK copy (${exportPartSize / MiB} MiB parts, FULL_OBJECT)`;
  /** `aws s3 cp` from the same S3 through `compressor`, lib-storage writing the output with the export's checksum. */
  const likeForLike = (compressor: string, label: string) => `s3 | ${compressor} | lib-storage (${label})`;
  const likeForLikeTask = (source: (typeof sources)[number], compressor: string): Task => ({
    name: likeForLike(compressor, source.label),
    run: async () => {
      const outKey = 'bench-pigz/out.gz';
      const started = performance.now();
      const child = spawn(
        'bash',
        [
          '-c',
          `set -o pipefail; aws --endpoint-url ${s3Endpoint} --only-show-errors s3 cp "s3://${bucket}/${source.key}" - | ${compressor}`,
        ],
        { env: awsEnvBigParts, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      await new Upload({
        client: s3,
        params: { Bucket: bucket, Key: outKey, Body: child.stdout, ...LIKE_FOR_LIKE },
        partSize: exportPartSize,
      }).done();
      const ms = performance.now() - started;
      if ((await exited) !== 0) throw new Error(`aws s3 cp | ${compressor} failed`);
      const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: outKey }));
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: outKey }] } }));
      return {
        ms,
        note: `lib-storage Upload (${exportPartSize / MiB} MiB parts, 4 in flight, CRC32 FULL_OBJECT), output ${head.ContentLength}`,
      };
    },
  });
  const pigz = spawnSync('pigz', ['--version']).status === 0;
  if (withBaselines && !pigz)
    console.log('pigz not installed (apt-get install pigz): no multi-core gzip baseline');
  if (withBaselines) {
    tasks.push({
      name: 'aws s3 cp (8 MiB parts × 10)',
      run: async () => ({ ms: await awsCopy(awsEnv), note: 'CLI defaults, server-side UploadPartCopy' }),
    });
    tasks.push({
      name: `aws s3 cp (${exportPartSize / MiB} MiB parts × 10)`,
      run: async () => ({ ms: await awsCopy(awsEnvBigParts), note: "the export's part size" }),
    });
    tasks.push({
      name: SDK_COPY,
      run: async () => {
        const { ms, copiedMs } = await sdkCopy();
        return {
          ms,
          transferMs: copiedMs,
          note: `UploadPartCopy × ${COPY_CONCURRENCY} in flight, CRC32 FULL_OBJECT as the export; all parts copied by ${(copiedMs / 1000).toFixed(1)} s`,
        };
      },
    });
    for (const source of sources) {
      for (const level of [1, 6]) {
        tasks.push({
          name: `gzip -${level} (${source.label})`,
          run: async () => ({
            ms: await timed('sh', ['-c', `gzip -${level} -c "$1" > /dev/null`, 'sh', source.file]),
            note: 'local, one core',
          }),
        });
      }
      // The multi-core baseline: the worker compresses slices on every core, as pigz does.
      if (pigz) {
        tasks.push({
          name: `pigz -6 -p ${cores} (${source.label})`,
          run: async () => ({
            ms: await timed('sh', ['-c', `pigz -6 -p ${cores} -c "$1" > /dev/null`, 'sh', source.file]),
            note: `local, ${cores} threads`,
          }),
        });
      }
      // pigz on the export's own path: the source read from the same S3, compressed on every core,
      // written back to the same S3 with the export's part size. On one machine the emulator's CPU
      // (serving the reads, taking the parts) is shared with the compression, for both sides alike.
      if (pigz) {
        tasks.push({
          name: `s3 | pigz -6 -p ${cores} | s3 (${source.label})`,
          run: async () => {
            const outKey = 'bench-pigz/out.gz';
            const aws = `aws --endpoint-url ${s3Endpoint} --only-show-errors s3 cp`;
            const ms = await timed(
              'bash',
              [
                '-c',
                `set -o pipefail; ${aws} "s3://${bucket}/${source.key}" - | pigz -6 -p ${cores} | ${aws} - "s3://${bucket}/${outKey}" --expected-size ${size}`,
              ],
              awsEnvBigParts,
            );
            const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: outKey }));
            await s3.send(
              new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: outKey }] } }),
            );
            return {
              ms,
              note: `aws s3 cp - (${exportPartSize / MiB} MiB parts, COMPOSITE CRC32), output ${head.ContentLength}`,
            };
          },
        });
        // The same, with the compressed stream written by lib-storage with the export's checksum.
        tasks.push(likeForLikeTask(source, `pigz -6 -p ${cores}`));
      }
      // And with gzip on one core, the export's other goal (issue 13: at least gzip -6 on one core).
      tasks.push(likeForLikeTask(source, 'gzip -6'));
      // The worker's own compressor (its gzip(): zlib level 6, its chunk size) on one core: its slices
      // one after another.
      tasks.push({
        name: `node zlib -6 (${source.label})`,
        run: async () => {
          const started = performance.now();
          let output = 0;
          for (let offset = 0; offset < size; offset += GZIP_SLICE_TARGET)
            output += (await gzip(source.data.subarray(offset, offset + GZIP_SLICE_TARGET))).length;
          return {
            ms: performance.now() - started,
            note: `in-process, ${GZIP_SLICE_TARGET / MiB} MiB slices one after another, output ${output}`,
          };
        },
      });
    }
  }

  const results = new Map<string, { ms: number; detail?: ExportRun; transferMs?: number }[]>();
  for (let round = 1; round <= rounds; round++) {
    // Alternate the order so that no task always runs on a warmer (or busier) machine.
    const order = round % 2 ? tasks : [...tasks].reverse();
    for (const task of order) {
      const { ms, note, detail, transferMs = detail?.phases.allBytes } = await task.run();
      results.set(task.name, [
        ...(results.get(task.name) ?? []),
        { ms, ...(detail ? { detail } : {}), ...(transferMs !== undefined ? { transferMs } : {}) },
      ]);
      console.log(
        `round ${round}  ${task.name.padEnd(32)} ${(ms / 1000).toFixed(2).padStart(7)} s ${mbps(size, ms)
          .toFixed(1)
          .padStart(7)} MB/s  ${note}`,
      );
      if (detail) console.log(`         ${''.padEnd(32)} ${describePhases(detail)}`);
    }
  }

  const best = (name: string) => {
    const runs = results.get(name);
    return runs?.reduce((a, b) => (b.ms < a.ms ? b : a));
  };
  const line = (name: string) => {
    const run = best(name);
    if (!run) return '';
    return `  ${name.padEnd(44)} ${mbps(size, run.ms).toFixed(1).padStart(7)} MB/s ${(run.ms / 1000).toFixed(2).padStart(8)} s\n`;
  };
  const ratio = (label: string, a: string, b: string) => {
    const x = best(a);
    const y = best(b);
    return x && y ? `  ${label.padEnd(44)} ${(y.ms / x.ms).toFixed(3).padStart(7)}\n` : '';
  };
  const cpu = cpus();
  const awsDefault = 'aws s3 cp (8 MiB parts × 10)';
  const awsBig = `aws s3 cp (${exportPartSize / MiB} MiB parts × 10)`;
  let summary = `
machine: ${cpu[0]?.model} × ${cpu.length}, node ${process.version}, S3 = moto_server${motoVersion()}, DynamoDB = ${
    stack.info.dynamodbEndpoint === stack.info.s3Endpoint ? 'moto' : 'DynamoDB Local'
  }, API = serverless-offline
load average (1/5/15 min): ${loadBefore} before, ${load()} after
${size / MiB} MiB per source, export part size ${exportPartSize / MiB} MiB${
    exportPartMib ? ' (EXPORT_PART_SIZE_MIB set)' : ' (default)'
  }, POST -> SUCCEEDED polled every 100 ms, best of ${rounds}:
`;
  summary += line('export raw (random)') + line(awsDefault) + line(awsBig);
  summary += ratio('ratio export raw / aws s3 cp', 'export raw (random)', awsDefault);
  summary += ratio(`ratio export raw / aws s3 cp ${exportPartSize / MiB}M`, 'export raw (random)', awsBig);
  summary += line(SDK_COPY);
  summary += ratio('ratio export raw / SDK copy (like for like)', 'export raw (random)', SDK_COPY);
  // Until the last part: the export's as its poller saw bytesDone reach the size (100 ms polls).
  const bestTransfer = (name: string) => {
    const times = (results.get(name) ?? []).flatMap((run) =>
      run.transferMs === undefined ? [] : [run.transferMs],
    );
    return times.length ? Math.min(...times) : undefined;
  };
  const [exportTransfer, copyTransfer] = [bestTransfer('export raw (random)'), bestTransfer(SDK_COPY)];
  if (exportTransfer && copyTransfer)
    summary += `  ${'ratio export raw / SDK copy, until the last part'.padEnd(44)} ${(copyTransfer / exportTransfer).toFixed(3).padStart(7)}  (${(exportTransfer / 1000).toFixed(2)} vs ${(copyTransfer / 1000).toFixed(2)} s, before moto's completion)\n`;
  for (const source of sources) {
    summary += line(`export gzip (${source.label})`) + line(`gzip -1 (${source.label})`);
    summary += line(`gzip -6 (${source.label})`);
    summary += line(`node zlib -6 (${source.label})`);
    summary += ratio(
      `ratio export gzip / gzip -6 (${source.label})`,
      `export gzip (${source.label})`,
      `gzip -6 (${source.label})`,
    );
    summary += line(`pigz -6 -p ${cores} (${source.label})`);
    summary += ratio(
      `ratio export gzip / pigz -6 -p ${cores} (${source.label})`,
      `export gzip (${source.label})`,
      `pigz -6 -p ${cores} (${source.label})`,
    );
    summary += line(`s3 | pigz -6 -p ${cores} | s3 (${source.label})`);
    summary += ratio(
      `ratio export gzip / s3 | pigz -6 -p ${cores} | s3 (${source.label})`,
      `export gzip (${source.label})`,
      `s3 | pigz -6 -p ${cores} | s3 (${source.label})`,
    );
    summary += line(likeForLike(`pigz -6 -p ${cores}`, source.label));
    summary += ratio(
      `ratio export gzip / s3 | pigz | lib-storage (${source.label}, like for like)`,
      `export gzip (${source.label})`,
      likeForLike(`pigz -6 -p ${cores}`, source.label),
    );
    summary += line(likeForLike('gzip -6', source.label));
    summary += ratio(
      `ratio export gzip / s3 | gzip -6 | lib-storage (${source.label}, like for like)`,
      `export gzip (${source.label})`,
      likeForLike('gzip -6', source.label),
    );
    summary += ratio(
      `ratio export gzip / node zlib -6 (${source.label})`,
      `export gzip (${source.label})`,
      `node zlib -6 (${source.label})`,
    );
  }
  for (const name of results.keys()) {
    const detail = best(name)?.detail;
    if (detail) summary += `  ${name}: ${describePhases(detail)}\n`;
  }
  console.log(summary.trimEnd());
} catch (error) {
  if (!values.verbose && logTail.length > 0)
    console.error(`last lines of the stack's log:\n${logTail.join('\n')}`);
  throw error;
} finally {
  await stack.stop();
  rmSync(keysFile, { force: true });
  rmSync(scratch, { recursive: true, force: true });
}
