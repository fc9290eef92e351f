import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { checksumOf } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { projectRoot } from '../../scripts/local-stack.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { api } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The CLI's checksums end to end, as a user runs it: uploads checked by CRC32 by default, a resume
 * that compares the parts S3 holds with the file, and a download that refuses bytes which are not
 * the export's. Only where S3 verifies and lists checksums as AWS does (LocalStack): moto checks no
 * part or object checksum and lists no part checksums, so there is nothing to fail there.
 */

const stack = testStack();
const checkingS3 = stack.emulator?.s3 === 'localstack';
const describeOnCheckingS3 = checkingS3 ? describe : describe.skip;
const title = checkingS3
  ? 'file-jobs CLI with checksums against an S3 that verifies them (LocalStack)'
  : `file-jobs CLI with checksums (skipped: S3 here is ${stack.emulator?.s3 ?? 'unknown'}, which verifies no checksum and lists no part checksums; run TEST_EMULATOR=localstack npm test)`;

const CLI = join(projectRoot, 'cli', 'main.ts');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

let workDir: string;
beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'file-jobs-cli-sums-'));
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

function start(args: string[], input = '') {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: join(workDir, 'config') };
  delete env.NODE_OPTIONS;
  delete env.FILE_JOBS_TOKEN;
  delete env.FILE_JOBS_API_URL;
  const child: ChildProcess = spawn(process.execPath, [CLI, '--api', stack.apiUrl, ...args], {
    cwd: workDir,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers: ((text: string) => void)[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const watcher of watchers) watcher(stdout);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin!.end(input);
  const exited = new Promise<Run>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  /** Resolves once stdout holds a line that passes `test`. */
  const until = (test: (line: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const check = (text: string) => {
        const found = text.split('\n').find(test);
        if (found) resolve(found);
      };
      watchers.push(check);
      void exited.then((run) => reject(new Error(`the CLI exited first:\n${run.stdout}\n${run.stderr}`)));
    });
  return { child, exited, until };
}

const cli = (args: string[], input = '') => start(args, input).exited;

const events = (stdout: string) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, any>);

async function signedInUser() {
  const user = await createTestUser('clisum');
  expect(await cli(['login', user.username], `${user.password}\n`)).toMatchObject({ code: 0 });
  return { ...user, jwt: await user.token() };
}

const s3 = () =>
  new S3Client({
    region: stack.region,
    endpoint: stack.s3Endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });

/**
 * Rewrites an object behind the service's back: with the AWS CLI (`aws s3 cp`) where it is installed
 * (it is on the development machines; .ci/run installs none), else with the SDK's PutObject.
 */
function rewriteObject(key: string, bytes: Uint8Array): Promise<'aws-cli' | 'sdk'> {
  const file = join(workDir, 'rewrite.bin');
  writeFileSync(file, bytes);
  const aws = spawnSync(
    'aws',
    [
      '--endpoint-url',
      stack.s3Endpoint,
      '--region',
      stack.region,
      's3',
      'cp',
      file,
      `s3://${stack.bucket}/${key}`,
    ],
    { encoding: 'utf8', env: { ...process.env, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' } },
  );
  if (aws.status === 0) return Promise.resolve('aws-cli');
  if (!(aws.error && (aws.error as NodeJS.ErrnoException).code === 'ENOENT'))
    throw new Error(`aws s3 cp failed: ${aws.stderr || aws.error?.message}`);
  return s3()
    .send(new PutObjectCommand({ Bucket: stack.bucket, Key: key, Body: bytes }))
    .then(() => 'sdk');
}

describeOnCheckingS3(title, () => {
  it('uploads with CRC32 by default: the job, GET /files and S3 all hold the CRC32 of the file', async () => {
    const user = await signedInUser();
    const bytes = randomBytes(13 * MiB + 321);
    const path = join(workDir, 'summed.bin');
    writeFileSync(path, bytes);
    const run = await cli(['--json', 'upload', path, '--part-size', '5']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const lines = events(run.stdout);
    expect(lines[0]).toMatchObject({ event: 'started', checksumAlgorithm: 'CRC32', partCount: 3 });
    const crc32 = await checksumOf('CRC32', bytes);
    for (const part of lines.filter((line) => line.event === 'part')) {
      const offset = (part.partNumber - 1) * 5 * MiB;
      expect(part.checksum).toBe(await checksumOf('CRC32', bytes.subarray(offset, offset + 5 * MiB)));
    }
    const expected = { algorithm: 'CRC32', type: 'FULL_OBJECT', value: crc32 };
    expect(lines.at(-1)).toMatchObject({
      event: 'completed',
      checksumAlgorithm: 'CRC32',
      checksum: expected,
    });

    const job = (await api(`/jobs/${lines[0]!.jobId}`, { token: user.jwt })).body.job;
    expect(job).toMatchObject({ status: 'COMPLETED', checksumAlgorithm: 'CRC32', checksum: expected });
    const head = await testBucket().head(`uploads/${user.username}/summed.bin`, { checksum: true });
    expect(head?.checksum).toEqual(expected);
    const files = (await api('/files', { token: user.jwt })).body.files;
    expect(files).toEqual([expect.objectContaining({ name: 'summed.bin', checksum: expected })]);

    const plain = await cli(['job', lines[0]!.jobId]);
    expect(plain.stdout).toContain(`checksum: CRC32 ${crc32} (FULL_OBJECT)`);
  });

  it("a download whose object was rewritten behind the service's back fails with exit code 4 and writes nothing", async () => {
    const user = await signedInUser();
    const bytes = randomBytes(6 * MiB + 5);
    const path = join(workDir, 'source.bin');
    writeFileSync(path, bytes);
    expect((await cli(['upload', path])).code).toBe(0);
    const exported = await cli(['--json', 'export', 'source.bin']);
    expect(exported.code).toBe(0);
    const jobId = events(exported.stdout)[0]!.jobId as string;
    const job = (await api(`/jobs/${jobId}`, { token: user.jwt })).body.job;
    expect(job.checksum).toEqual({
      algorithm: 'CRC32',
      type: 'FULL_OBJECT',
      value: await checksumOf('CRC32', bytes),
    });

    // Same size, one byte different: only the checksum can tell.
    const key = `exports/${user.username}/${jobId}/source.bin`;
    expect(await testBucket().head(key)).toMatchObject({ size: bytes.length });
    const corrupt = Buffer.from(bytes);
    corrupt[4 * MiB] = corrupt[4 * MiB]! ^ 0x01;
    const how = await rewriteObject(key, corrupt);
    expect(['aws-cli', 'sdk']).toContain(how);

    const download = await cli(['download', jobId, join(workDir, 'copy.bin')]);
    expect(download.code).toBe(4);
    const errorLines = download.stderr.split('\n').filter(Boolean);
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toMatch(
      new RegExp(
        `^error: the download of export job ${jobId} is corrupt: its CRC32 is \\S+ where the export's is \\S+ .*nothing was written to .*copy\\.bin$`,
      ),
    );
    expect(download.stderr).not.toMatch(/\n\s+at /);
    // Neither the file nor a temporary one.
    expect(readdirSync(workDir).filter((name) => name.includes('copy.bin'))).toEqual([]);

    const json = await cli(['--json', 'download', jobId, workDir]);
    expect(json.code).toBe(4);
    expect(events(json.stdout)).toEqual([
      expect.objectContaining({
        event: 'checksum-mismatch',
        jobId,
        algorithm: 'CRC32',
        expected: job.checksum.value,
      }),
    ]);
  });

  it('a resumed upload whose local part changed sends that part again, found by its checksum', async () => {
    const user = await signedInUser();
    const bytes = randomBytes(20 * MiB);
    const path = join(workDir, 'resumed.bin');
    writeFileSync(path, bytes);
    const first = start([
      '--json',
      'upload',
      path,
      '--part-size',
      '5',
      '--concurrency',
      '1',
      '--max-rate',
      '4',
      '--keep',
    ]);
    const started = JSON.parse(await first.until((line) => line.includes('"event":"started"')));
    await first.until((line) => line.includes('"event":"part"') && line.includes('"partNumber":1,'));
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const reconciled = (await api(`/jobs/${started.jobId}?reconcile=true`, { token: user.jwt })).body;
    expect(reconciled.uploadedParts).toContain(1);
    expect(reconciled.parts).toContainEqual({
      partNumber: 1,
      size: 5 * MiB,
      checksum: await checksumOf('CRC32', bytes.subarray(0, 5 * MiB)),
    });

    // The file changes where part 1 lies (same size): its modification time changes too, which
    // without checksums would start the upload over.
    const changed = Buffer.from(bytes);
    changed.fill(7, 1000, 2000);
    writeFileSync(path, changed);
    const second = await cli(['--json', 'upload', path, '--part-size', '5']);
    expect(second).toMatchObject({ code: 0, stderr: '' });
    const lines = events(second.stdout);
    expect(lines[0]).toMatchObject({
      event: 'started',
      jobId: started.jobId,
      resumed: true,
      checksumAlgorithm: 'CRC32',
    });
    expect(lines.filter((line) => line.event === 'verified')).toContainEqual(
      expect.objectContaining({ partNumber: 1, matched: false }),
    );
    expect(lines.filter((line) => line.event === 'part').map((line) => line.partNumber)).toContain(1);
    const held = reconciled.uploadedParts.length as number;
    expect(lines.at(-1)).toMatchObject({
      event: 'completed',
      jobId: started.jobId,
      partsChanged: 1,
      partsReused: held - 1,
      partsSent: 4 - held + 1,
      checksum: { algorithm: 'CRC32', type: 'FULL_OBJECT', value: await checksumOf('CRC32', changed) },
    });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/resumed.bin`))!, changed);
  });
});
