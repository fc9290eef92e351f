import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MiB } from '../../common/part-plan.ts';
import { projectRoot } from '../../scripts/local-stack.ts';
import { expectSameBytes, slowToGzip } from '../support/bytes.ts';
import { api } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { signWithServiceKey, stackIssuer } from '../support/tokens.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/**
 * The CLI as a user runs it: a real `node cli/main.ts` process against the test stack, with its own
 * config directory (XDG_CONFIG_HOME), output read from its stdout and stderr, signals sent to it.
 */

const CLI = join(projectRoot, 'cli', 'main.ts');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  input?: string;
  env?: Record<string, string>;
  /** Without `--api <test stack>`. */
  noApi?: boolean;
}

let workDir: string;
let configHome: string;

beforeEach(() => {
  workDir = mkdtempSync(join(tmpdir(), 'file-jobs-cli-e2e-'));
  configHome = join(workDir, 'config');
});
afterEach(() => rmSync(workDir, { recursive: true, force: true }));

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, ...extra };
  // Jest's own flags are not the CLI's; nor is a token or URL from the developer's shell.
  delete env.NODE_OPTIONS;
  if (!extra.FILE_JOBS_TOKEN) delete env.FILE_JOBS_TOKEN;
  delete env.FILE_JOBS_API_URL;
  return env;
}

/** Starts the CLI; `lines` collects stdout lines as they come, `exited` resolves with everything. */
function start(args: string[], options: CliOptions = {}) {
  const fullArgs = options.noApi ? args : ['--api', testStack().apiUrl, ...args];
  const child: ChildProcess = spawn(process.execPath, [CLI, ...fullArgs], {
    cwd: workDir,
    env: childEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      for (const waiter of [...waiters]) {
        if (waiter.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin!.end(options.input ?? '');
  const exited = new Promise<Run>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  /** Resolves with the first stdout line (from now on) that passes `test`; fails if the CLI exits first. */
  const line = (test: (line: string) => boolean, timeoutMs = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no such line within ${timeoutMs} ms:\n${stdout}\n${stderr}`)),
        timeoutMs,
      );
      waiters.push({
        test,
        resolve: (found) => {
          clearTimeout(timer);
          resolve(found);
        },
      });
      void exited.then((run) => {
        clearTimeout(timer);
        reject(new Error(`the CLI exited (${run.code}) first:\n${run.stdout}\n${run.stderr}`));
      });
    });
  return { child, exited, line };
}

const cli = (args: string[], options: CliOptions = {}) => start(args, options).exited;

const jsonLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, any>);

/** A failure as the CLI must report it: non-zero, one `error: …` line on stderr, no stack trace. */
function expectOneLineError(run: Run, pattern: RegExp) {
  expect(run.code).not.toBe(0);
  expect(run.code).not.toBeNull();
  const lines = run.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(pattern);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(run.stdout).not.toMatch(/\n\s+at /);
}

async function signedInUser() {
  const user = await createTestUser('cli');
  const login = await cli(['login', user.username], { input: `${user.password}\n` });
  expect(login).toMatchObject({ code: 0, stderr: '' });
  return { ...user, jwt: await user.token() };
}

function writeFile(name: string, bytes: Uint8Array) {
  const path = join(workDir, name);
  writeFileSync(path, bytes);
  return path;
}

async function freeClosedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('file-jobs CLI', () => {
  it('signs in from stdin, stores the token 0600, uploads 20 MiB and lists it', async () => {
    const user = await signedInUser();
    const configFile = join(configHome, 'file-jobs', 'config.json');
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(configFile, 'utf8')).sessions[testStack().apiUrl]).toMatchObject({
      username: user.username,
      token: expect.any(String),
    });

    const bytes = randomBytes(20 * MiB);
    const path = writeFile('twenty.bin', bytes);
    const run = await cli(['--json', 'upload', path, '--part-size', '5', '--concurrency', '4']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const events = jsonLines(run.stdout);
    expect(events[0]).toMatchObject({
      event: 'started',
      filename: 'twenty.bin',
      partCount: 4,
      resumed: false,
    });
    expect(events.filter((event) => event.event === 'part')).toHaveLength(4);
    expect(events.at(-1)).toMatchObject({
      event: 'completed',
      status: 'COMPLETED',
      size: bytes.length,
      partsSent: 4,
      partsReused: 0,
    });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/twenty.bin`))!, bytes);

    const files = await cli(['--json', 'files']);
    expect(JSON.parse(files.stdout).files).toEqual([
      expect.objectContaining({ name: 'twenty.bin', size: bytes.length, lastModified: expect.any(String) }),
    ]);
    // Plain output when stdout is not a terminal: one tab-separated line per file / job.
    expect((await cli(['files'])).stdout).toMatch(new RegExp(`^twenty\\.bin\\t${bytes.length}\\t`));
    const jobs = await cli(['jobs', '--type', 'upload']);
    expect(jobs.stdout).toContain(`${events.at(-1)!.jobId}\tupload\tCOMPLETED\t4\t4\t${bytes.length}`);

    // The same file again: refused without --overwrite, with the hint.
    expectOneLineError(await cli(['upload', path]), /already exists.*--overwrite/);
  });

  it('plain output has a line per event and no progress bar', async () => {
    await signedInUser();
    const path = writeFile('plain.bin', randomBytes(11 * MiB));
    const run = await cli(['upload', path, '--part-size', '5']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^upload job \w+ started: plain\.bin, 11\.0 MiB \(11534336 bytes\) in 3 parts of 5\.0 MiB, CRC32 checksums$/,
    );
    expect(lines.filter((line) => /^part \d sent: \d\/3 parts/.test(line))).toHaveLength(3);
    expect(lines.at(-1)).toMatch(
      /^upload job \w+ COMPLETED: plain\.bin, 11\.0 MiB in .*; 3 parts sent, 0 already on the server(; CRC32 \S+, checked by S3)?$/,
    );
    expect(run.stdout.includes('\u001b') || run.stdout.includes('\r')).toBe(false);
  });

  it('Ctrl-C mid-upload aborts the job on the server and leaves no multipart upload', async () => {
    const user = await signedInUser();
    const path = writeFile('interrupted.bin', randomBytes(20 * MiB));
    const upload = start(['upload', path, '--part-size', '5', '--concurrency', '1', '--max-rate', '4']);
    const started = await upload.line((line) => line.startsWith('upload job '));
    const jobId = /^upload job (\w+) started/.exec(started)![1]!;
    await upload.line((line) => line.startsWith('part 1 sent'));
    upload.child.kill('SIGINT');
    const run = await upload.exited;

    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/interrupted/);
    expect(run.stderr).toContain(`upload job ${jobId} aborted on the server`);
    expect(run.stderr).not.toMatch(/error:|\n\s+at /);
    const job = await api(`/jobs/${jobId}`, { token: user.jwt });
    expect(job.body.job.status).toBe('ABORTED');
    expect(await testBucket().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
    expect(await testBucket().head(`uploads/${user.username}/interrupted.bin`)).toBeUndefined();
  });

  // Without checksums: the parts S3 holds are reused as they are. With them (the default), each is
  // compared with the file first, which needs S3 to list part checksums: cli-checksums.test.ts.
  it('after SIGKILL with --keep, running it again sends only the missing parts', async () => {
    const user = await signedInUser();
    const bytes = randomBytes(20 * MiB);
    const path = writeFile('resumed.bin', bytes);
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
      '--no-checksum',
    ]);
    const started = JSON.parse(await first.line((line) => line.includes('"event":"started"')));
    await first.line((line) => line.includes('"event":"part"'));
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await pause(300);

    const reconciled = await api(`/jobs/${started.jobId}?reconcile=true`, { token: user.jwt });
    expect(reconciled.body.job.status).toBe('UPLOADING');
    const missing: number[] = reconciled.body.missingParts;
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.length).toBeLessThan(4);

    const second = await cli(['--json', 'upload', path, '--part-size', '5', '--no-checksum']);
    expect(second).toMatchObject({ code: 0, stderr: '' });
    const events = jsonLines(second.stdout);
    expect(events[0]).toMatchObject({
      event: 'started',
      jobId: started.jobId,
      resumed: true,
      partsToSend: missing.length,
    });
    expect(
      events
        .filter((event) => event.event === 'part')
        .map((event) => event.partNumber)
        .sort((a, b) => a - b),
    ).toEqual(missing);
    expect(events.at(-1)).toMatchObject({
      event: 'completed',
      jobId: started.jobId,
      resumed: true,
      partsSent: missing.length,
      partsReused: 4 - missing.length,
    });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/resumed.bin`))!, bytes);
    expect(await testBucket().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
  });

  it('without checksums, starts over instead of resuming when the file changed since the kept upload began', async () => {
    const user = await signedInUser();
    const path = writeFile('changed.bin', randomBytes(12 * MiB));
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
      '--no-checksum',
    ]);
    const started = JSON.parse(await first.line((line) => line.includes('"event":"started"')));
    await first.line((line) => line.includes('"event":"part"'));
    first.child.kill('SIGKILL');
    await first.exited;

    const changed = randomBytes(12 * MiB);
    writeFileSync(path, changed);
    const second = await cli(['--json', 'upload', path, '--part-size', '5', '--no-checksum']);
    expect(second.code).toBe(0);
    const events = jsonLines(second.stdout);
    expect(events[0]).toMatchObject({ event: 'aborted-unfinished', jobId: started.jobId });
    expect(events.at(-1)).toMatchObject({ event: 'completed', resumed: false, partsSent: 3 });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/changed.bin`))!, changed);
  });

  it('exports with progress and downloads, raw and gzip; download fetches a finished export again', async () => {
    const user = await signedInUser();
    const bytes = randomBytes(12 * MiB + 777);
    await testBucket().putObject(`uploads/${user.username}/data.bin`, bytes);

    const raw = await cli(['--json', 'export', 'data.bin', '--download', join(workDir, 'copy.bin')]);
    expect(raw).toMatchObject({ code: 0, stderr: '' });
    const events = jsonLines(raw.stdout);
    expect(events[0]).toMatchObject({ event: 'started', filename: 'data.bin', format: 'raw' });
    expect(events.some((event) => event.event === 'progress')).toBe(true);
    expect(events.find((event) => event.event === 'succeeded')).toMatchObject({
      outputSize: bytes.length,
      downloadUrl: expect.stringMatching(/^http/),
    });
    expect(events.at(-1)).toMatchObject({ event: 'downloaded', bytes: bytes.length });
    expectSameBytes(readFileSync(join(workDir, 'copy.bin')), bytes);

    // Into a directory: the export's own name.
    const gzip = await cli(['export', 'data.bin', '--gzip', '--download', workDir]);
    expect(gzip.code).toBe(0);
    expect(gzip.stdout).toMatch(/export job \w+ started: data\.bin \(gzip, 12\.0 MiB\)/);
    // A progress line, whatever status the polls happened to see (a 12 MiB export can finish
    // between two of them: gzip compresses its slices at once).
    expect(gzip.stdout).toMatch(/export job \w+ (QUEUED|RUNNING): .* parts/);
    expect(gzip.stdout).toContain(`downloaded data.bin.gz to ${join(workDir, 'data.bin.gz')}`);
    expectSameBytes(gunzipSync(readFileSync(join(workDir, 'data.bin.gz'))), bytes);

    const again = await cli(['download', events[0]!.jobId, join(workDir, 'again.bin')]);
    expect(again.code).toBe(0);
    expectSameBytes(readFileSync(join(workDir, 'again.bin')), bytes);
  });

  it('a download killed mid-way (SIGKILL), run again, goes on from the bytes it had fetched', async () => {
    const user = await signedInUser();
    const bytes = randomBytes(12 * MiB + 5);
    await testBucket().putObject(`uploads/${user.username}/far.bin`, bytes);
    const exported = await cli(['--json', 'export', 'far.bin']);
    expect(exported.code).toBe(0);
    const { jobId } = jsonLines(exported.stdout)[0]!;
    const target = join(workDir, 'far.bin');
    const partials = () => readdirSync(workDir).filter((name) => name.endsWith('.part'));

    // 2 MiB/s: six seconds for the whole; killed once it holds a MiB or more.
    const first = start(['download', jobId, target, '--max-rate', '2']);
    const deadline = Date.now() + 30_000;
    const kept = () =>
      partials().reduce((most, name) => Math.max(most, statSync(join(workDir, name)).size), 0);
    while (kept() < MiB && Date.now() < deadline) await pause(50);
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const had = kept();
    expect(had).toBeGreaterThanOrEqual(MiB);
    expect(had).toBeLessThan(bytes.length);
    expect(existsSync(target)).toBe(false);

    const second = await cli(['--json', 'download', jobId, target]);
    expect(second).toMatchObject({ code: 0, stderr: '' });
    expect(jsonLines(second.stdout).at(-1)).toMatchObject({
      event: 'downloaded',
      bytes: bytes.length,
      resumedFrom: had,
      checksum: { algorithm: 'CRC32', verified: true },
    });
    expectSameBytes(readFileSync(target), bytes);
    expect(partials()).toEqual([]);
  });

  it('Ctrl-C mid-export cancels it on the server', async () => {
    const user = await signedInUser();
    await testBucket().putObject(`uploads/${user.username}/big.bin`, slowToGzip(60 * MiB));
    const run = start(['--json', 'export', 'big.bin', '--gzip']);
    const started = JSON.parse(await run.line((line) => line.includes('"event":"started"')));
    await run.line((line) => line.includes('"status":"RUNNING"'));
    run.child.kill('SIGINT');
    const result = await run.exited;
    expect(result.code).toBe(130);
    expect(result.stderr).toContain(`export job ${started.jobId} cancelled on the server`);
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({ event: 'interrupted', outcome: 'killed' });

    const deadline = Date.now() + 30_000;
    let status = '';
    while (Date.now() < deadline) {
      status = (await api(`/jobs/${started.jobId}`, { token: user.jwt })).body.job.status;
      if (status === 'CANCELLED') break;
      await pause(200);
    }
    expect(status).toBe('CANCELLED');
    expect(await testBucket().list(`exports/${user.username}/${started.jobId}/`)).toEqual([]);
  });

  it('kill upload from another shell stops a running upload', async () => {
    await signedInUser();
    const path = writeFile('victim.bin', randomBytes(20 * MiB));
    const upload = start(['upload', path, '--part-size', '5', '--concurrency', '1', '--max-rate', '4']);
    const started = await upload.line((line) => line.startsWith('upload job '));
    const jobId = /^upload job (\w+) started/.exec(started)![1]!;
    await upload.line((line) => line.startsWith('part 1 sent'));

    const killed = await cli(['kill', 'upload']);
    expect(killed).toMatchObject({ code: 0, stderr: '' });
    expect(killed.stdout).toBe(`aborted 1 upload: job ${jobId} (victim.bin)\n`);
    expectOneLineError(await upload.exited, /ABORTED on the server|no longer active|aborted on the server/);
    const nothing = await cli(['kill', 'upload']);
    expectOneLineError(nothing, /no upload found/);
    // Nothing running is exit code 3, which scripts tell apart from a failure (1).
    expect(nothing.code).toBe(3);
    expect((await cli(['kill', 'export'])).code).toBe(3);
  });

  it('renews a stored token with a third of its life left, and stores the new one for the next command', async () => {
    const user = await signedInUser();
    const configFile = join(configHome, 'file-jobs', 'config.json');
    const stored = JSON.parse(readFileSync(configFile, 'utf8'));
    // The session as it is 50 minutes after `login`: ten minutes of its token left.
    const now = Math.floor(Date.now() / 1000);
    const { tokenVersion } = (await testUserStore().get(user.username))!;
    const signedInAt = now - 3000;
    const ageing = await signWithServiceKey(
      { sub: user.username, iss: stackIssuer(), aud: 'file-jobs', ver: tokenVersion, auth_time: signedInAt },
      { iat: signedInAt, exp: now + 600 },
    );
    stored.sessions[testStack().apiUrl].token = ageing;
    writeFileSync(configFile, JSON.stringify(stored));

    expect(await cli(['files'])).toMatchObject({ code: 0, stderr: '' });
    const session = JSON.parse(readFileSync(configFile, 'utf8')).sessions[testStack().apiUrl];
    expect(session.token).not.toBe(ageing);
    const claims = JSON.parse(Buffer.from(session.token.split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ sub: user.username, auth_time: signedInAt, ver: tokenVersion });
    expect(claims.exp).toBeGreaterThanOrEqual(now + 3600);
    expect(Date.parse(session.expiresAt) / 1000).toBeCloseTo(claims.exp, -1);
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    // The next command goes on with it, and leaves it as it is (most of its life is left).
    expect(await cli(['jobs'])).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(readFileSync(configFile, 'utf8')).sessions[testStack().apiUrl].token).toBe(
      session.token,
    );
  });

  it('logout ends the sign-in on the service, so the stored token is refused even where it was copied', async () => {
    const user = await signedInUser();
    const configFile = join(configHome, 'file-jobs', 'config.json');
    const { token } = JSON.parse(readFileSync(configFile, 'utf8')).sessions[testStack().apiUrl];
    const run = await cli(['logout']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toBe(`signed out of ${testStack().apiUrl} (the sign-in is ended on the service)\n`);
    expect(JSON.parse(readFileSync(configFile, 'utf8')).sessions[testStack().apiUrl]).toBeUndefined();
    expect((await api('/auth/renew', { method: 'POST', token })).status).toBe(401);
    // Another sign-in of the same user is not touched.
    expect((await api('/files', { token: user.jwt })).status).toBe(200);
  });

  describe('errors: one line, non-zero, no stack trace', () => {
    it('a wrong password', async () => {
      const user = await createTestUser('cli');
      const run = await cli(['login', user.username], { input: 'not-the-password\n' });
      expectOneLineError(run, /username or password is wrong/);
      expect(run.code).toBe(1);
    });

    it('an expired token', async () => {
      const user = await createTestUser('cli');
      const now = Math.floor(Date.now() / 1000);
      const expired = await signWithServiceKey(
        { sub: user.username, iss: stackIssuer(), aud: 'file-jobs' },
        { iat: now - 7200, exp: now - 3600 },
      );
      expectOneLineError(
        await cli(['files'], { env: { FILE_JOBS_TOKEN: expired } }),
        /expired.*file-jobs login/,
      );
      expectOneLineError(await cli(['jobs'], { env: { FILE_JOBS_TOKEN: 'not.a.token' } }), /not valid/);
    });

    it('an unknown file, local or remote', async () => {
      await signedInUser();
      expectOneLineError(
        await cli(['upload', join(workDir, 'missing.bin')]),
        /cannot read .*missing\.bin: no such file/,
      );
      expectOneLineError(await cli(['upload', workDir]), /cannot (read|upload)/);
      expectOneLineError(await cli(['export', 'nope.bin']), /no file nope\.bin in your uploads folder/);
      expectOneLineError(await cli(['download', '01ARZ3NDEKTSV4RRFFQ69G5FAV', workDir]), /no job/);
    });

    it('uploads an empty file (through the form route)', async () => {
      const user = await signedInUser();
      const path = writeFile('empty.txt', Buffer.alloc(0));
      const result = await cli(['upload', path]);
      expect(result).toMatchObject({ code: 0, stderr: '' });
      const files = await api('/files', { token: user.jwt });
      expect(files.body.files).toContainEqual(expect.objectContaining({ name: 'empty.txt', size: 0 }));
    });

    it('uploads a file whose name macOS gave it decomposed (NFD) under the composed name', async () => {
      const user = await signedInUser();
      const path = writeFile('re\u0301sume\u0301.txt', randomBytes(3000));
      const result = await cli(['upload', path]);
      expect(result).toMatchObject({ code: 0, stderr: '' });
      const files = await api('/files', { token: user.jwt });
      expect(files.body.files).toContainEqual(
        expect.objectContaining({ name: 'r\u00e9sum\u00e9.txt', size: 3000 }),
      );
    });

    it('says where its API URL came from when it was not given one', async () => {
      const byDefault = await cli(['logout'], { noApi: true });
      expect(byDefault.stderr).toBe(
        `note: using http://127.0.0.1:3000, the default (no --api, FILE_JOBS_API_URL or .local/stack.json in ${workDir})\n`,
      );
      expect(byDefault.stdout).toBe('not signed in to http://127.0.0.1:3000\n');
      mkdirSync(join(workDir, '.local'));
      writeFileSync(join(workDir, '.local', 'stack.json'), JSON.stringify({ apiUrl: testStack().apiUrl }));
      const fromStack = await cli(['logout'], { noApi: true });
      expect(fromStack.stderr).toBe(
        `note: using ${testStack().apiUrl}, from ${join(workDir, '.local', 'stack.json')}\n`,
      );
      // Told explicitly: nothing to say.
      expect((await cli(['logout'])).stderr).toBe('');
    });

    it('a server that is down', async () => {
      const port = await freeClosedPort();
      const down = ['--api', `http://127.0.0.1:${port}`];
      const files = await cli([...down, 'files'], { noApi: true, env: { FILE_JOBS_TOKEN: 'x' } });
      expectOneLineError(
        files,
        new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}: connection refused`),
      );
      const login = await cli([...down, 'login', 'someone'], { noApi: true, input: 'pw\n' });
      expectOneLineError(login, /connection refused; is the service running\?/);
    });

    it('bad input and not being signed in', async () => {
      expectOneLineError(await cli(['files']), /not signed in to .*file-jobs login/);
      await signedInUser();
      const path = writeFile('small.bin', randomBytes(100));
      const usage = [
        ['upload', path, '--part-size', '2'],
        ['upload', path, '--concurrency', '0'],
        ['upload', path, '--max-rate', 'fast'],
        ['upload'],
        ['jobs', '--type', 'folders'],
        ['kill', 'everything'],
        ['no-such-command'],
      ];
      for (const args of usage) {
        const run = await cli(args);
        expectOneLineError(run, /./);
        expect(run.code).toBe(2);
      }
      expectOneLineError(await cli(['upload', path, '--name', '../escape']), /must not contain/);
      expectOneLineError(await cli(['--api', 'not a url', 'files'], { noApi: true }), /not a URL/);
    });
  });

  it('the bundled bin (esbuild, no TypeScript at run time) runs the same CLI', async () => {
    const outfile = join(workDir, 'file-jobs.mjs');
    const build = await new Promise<number | null>((resolve) =>
      spawn(process.execPath, [join(projectRoot, 'cli', 'build.ts'), '--outfile', outfile], {
        env: childEnv(),
        stdio: 'ignore',
      }).on('close', resolve),
    );
    expect(build).toBe(0);
    const run = (args: string[]) =>
      new Promise<Run>((resolve) => {
        const child = spawn(process.execPath, [outfile, ...args], { cwd: workDir, env: childEnv() });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk) => {
          stdout += chunk;
        });
        child.stderr.on('data', (chunk) => {
          stderr += chunk;
        });
        child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
    const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8'));
    expect((await run(['--version'])).stdout.trim()).toBe(pkg.version);
    await signedInUser();
    const files = await run(['--api', testStack().apiUrl, '--json', 'files']);
    expect(files).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(files.stdout)).toEqual({ files: [] });
  });
});
