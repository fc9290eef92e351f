/**
 * `node bench/export-worker.ts`: the export worker alone (lib/exports/worker.ts), run in this process
 * against the local stack's S3 and DynamoDB, with no API and no serverless-offline around it. Through
 * the API (bench/export.ts) a change to the worker is lost in the noise of invoking it and of moto's
 * completion; here each round prints its phases and the CPU this process used (the main thread and
 * zlib's threads):
 *
 *   first part     the worker's first UploadPart / UploadPartCopy call, from the start of the run
 *   last part      its call of CompleteMultipartUpload: every part is in S3 (moto's completion after
 *                  that moves by ±1.5 s from round to round)
 *   total          until the worker answers, SUCCEEDED recorded
 *
 * Each output is downloaded and checked against the source by sha256 (gunzipped for gzip), untimed.
 * To compare two versions of the worker, run this on each, alternating, on the same machine.
 *
 *   node bench/export-worker.ts [--size-mib 512] [--rounds 3] [--format gzip|raw] [--verbose]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { availableParallelism, cpus, loadavg } from 'node:os';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { DEMO_USER, localCredentials, startLocalStack } from '../scripts/local-stack.ts';
import { stackLog } from './stack-log.ts';

const { values: flags } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '512' },
    rounds: { type: 'string', default: '3' },
    format: { type: 'string', default: 'gzip' },
    verbose: { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const SIZE = Number(flags['size-mib']) * MiB;
const ROUNDS = Number(flags.rounds);
const FORMAT = flags.format;
if (FORMAT !== 'gzip' && FORMAT !== 'raw') throw new Error('--format is gzip or raw');

const progress = (line: string) => process.stderr.write(`${line}\n`);
const { remember } = stackLog(flags.verbose ?? false);
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`.padStart(8);

progress(`starting the local stack (stage bench-worker), ${SIZE / MiB} MiB random source…`);
const stack = await startLocalStack({ stage: 'bench-worker', log: remember });
try {
  // The worker and the test helper that makes a job as POST /export does read the stack from here.
  Object.assign(process.env, stack.handlerEnv, {
    POWERTOOLS_LOG_LEVEL: 'WARN',
    TEST_STACK: JSON.stringify(stack.info),
  });
  const { createExportJob } = await import('../tests/support/exports.ts');
  const { runExport } = await import('../lib/exports/worker.ts');
  const { transferFileStore } = await import('../lib/storage/index.ts');
  const { jobStore } = await import('../lib/jobs/index.ts');

  const s3 = new S3Client({
    region: stack.info.region,
    endpoint: stack.info.s3Endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
      secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
    },
  });
  const source = Buffer.allocUnsafe(SIZE);
  randomFillSync(source);
  const sourceSha256 = createHash('sha256').update(source).digest('hex');
  await new Upload({
    client: s3,
    params: {
      Bucket: stack.info.bucket,
      Key: `uploads/${DEMO_USER.username}/bench-worker.bin`,
      Body: source,
    },
    partSize: 64 * MiB,
  }).done();

  // When the worker sends its first part and asks for the completion, as it calls the store.
  const store = transferFileStore();
  let firstPartAt = 0;
  let completeAt = 0;
  const uploadPart = store.uploadPart.bind(store);
  const uploadPartCopy = store.uploadPartCopy.bind(store);
  const complete = store.completeMultipartUpload.bind(store);
  store.uploadPart = (...args) => {
    firstPartAt ||= performance.now();
    return uploadPart(...args);
  };
  store.uploadPartCopy = (...args) => {
    firstPartAt ||= performance.now();
    return uploadPartCopy(...args);
  };
  store.completeMultipartUpload = (...args) => {
    completeAt = performance.now();
    return complete(...args);
  };

  const cpu = cpus()[0];
  console.log(
    `machine  ${cpu?.model ?? 'unknown CPU'} × ${availableParallelism()}, node ${process.version}; load ${loadavg()
      .map((value) => value.toFixed(2))
      .join(' ')}`,
  );
  console.log(`${FORMAT} export of ${SIZE / MiB} MiB random, in-process, ${ROUNDS} rounds:`);
  const totals: number[] = [];
  const lastParts: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const jobId = await createExportJob(DEMO_USER.username, 'bench-worker.bin', FORMAT);
    firstPartAt = 0;
    completeAt = 0;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    const result = await runExport(
      { username: DEMO_USER.username, jobId },
      {
        deadline: Number.POSITIVE_INFINITY,
        continueWith: async () => {
          throw new Error('the worker handed off: raise its deadline');
        },
      },
    );
    const total = performance.now() - started;
    const used = process.cpuUsage(cpuBefore);
    if (result !== 'succeeded') throw new Error(`round ${round}: the worker answered ${result}`);

    const job = (await jobStore().get(DEMO_USER.username, jobId))!;
    const { Body } = await s3.send(new GetObjectCommand({ Bucket: stack.info.bucket, Key: job.key }));
    const hash = createHash('sha256');
    const body = Body as Readable;
    const gunzip = createGunzip();
    body.once('error', (error) => gunzip.destroy(error));
    const plain = FORMAT === 'gzip' ? body.pipe(gunzip) : body;
    for await (const chunk of plain) hash.update(chunk as Buffer);
    if (hash.digest('hex') !== sourceSha256) throw new Error(`round ${round}: the output is not the source`);

    totals.push(total);
    lastParts.push(completeAt - started);
    console.log(
      `round ${round}  first part ${seconds(firstPartAt - started)}  last part ${seconds(completeAt - started)}` +
        `  total ${seconds(total)}  ${((SIZE / 1e6 / total) * 1000).toFixed(1).padStart(5)} MB/s` +
        `  CPU ${seconds((used.user + used.system) / 1000)}  (sha256 verified)`,
    );
  }
  console.log(
    `best    last part ${seconds(Math.min(...lastParts))}  total ${seconds(Math.min(...totals))}; load ${loadavg()
      .map((value) => value.toFixed(2))
      .join(' ')}`,
  );
} finally {
  progress('stopping the stack…');
  await stack.stop();
}
