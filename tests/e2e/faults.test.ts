import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { hashPassword } from '../../lib/auth/passwords.ts';
import { UserStore } from '../../lib/auth/user-store.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { exportStepSize } from '../../lib/exports/exports.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { newJobId } from '../../lib/jobs/job-ids.ts';
import { type JobRecord, TERMINAL_STATUSES } from '../../lib/jobs/jobs-table.ts';
import { exportQuota } from '../../lib/jobs/limits.ts';
import { fileStore } from '../../lib/storage/index.ts';
import { freePort } from '../../scripts/emulators.ts';
import {
  type FaultMode,
  type FaultOptions,
  type FaultProxy,
  startFaultProxy,
} from '../../scripts/fault-proxy.ts';
import {
  localCredentials,
  provisionResources,
  resolveService,
  startOffline,
} from '../../scripts/local-stack.ts';
import { janitorOver } from '../support/janitor.ts';
import { checkResponse } from '../support/openapi.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * Dependency faults over HTTP, with no mocks: a serverless-offline of its own (stage `faults`, its
 * own bucket and tables on the shared emulators) whose handlers reach S3 and DynamoDB through TCP
 * fault proxies. For each fault of each dependency, every route is called at once and must answer
 * within BOUND_MS: 503 ServiceUnavailable with Retry-After when it needs the broken dependency, its
 * usual answer when it does not; never offline's `errorMessage` or a stack trace. Then the fault
 * clears and every job the calls touched must converge, with DynamoDB and S3 agreeing.
 *
 * The handlers run with the production SDK settings (lib/aws/clients.ts), so the times measured
 * here are the real bounds. The shared stack is not behind the proxies: other suites are unaffected.
 */

const STAGE = 'faults';
/** Well inside API Gateway's 29 s; the SDK budgets are about 6.3 s (DynamoDB) and 9.3 s (S3). */
const BOUND_MS = 15_000;

type Dependency = 'dynamodb' | 's3';

let proxies: Record<Dependency, FaultProxy>;
let apiUrl = '';
let stopOffline: (() => Promise<void>) | undefined;
let users: UserStore;
const savedEnv: Record<string, string | undefined> = {};
/** Slowest answer per scenario, for the summary printed at the end. */
const timings: { scenario: string; slowestMs: number; route: string }[] = [];

interface Answer {
  status: number;
  headers: Headers;
  body: any;
  text: string;
  ms: number;
}

async function call(method: string, path: string, token?: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | FormData | undefined;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const started = performance.now();
  const response = await fetch(`${apiUrl}${path}`, { method, headers, body: payload });
  const text = await response.text();
  const ms = performance.now() - started;
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: the assertions say so
  }
  return { status: response.status, headers: response.headers, body: parsed, text, ms };
}

async function ok(method: string, path: string, token?: string, body?: unknown, status = 200) {
  const answer = await call(method, path, token, body);
  if (answer.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${answer.status} ${answer.text}`);
  return answer.body;
}

beforeAll(async () => {
  const stack = testStack();
  const [dynamodb, s3] = await Promise.all([
    startFaultProxy(stack.dynamodbEndpoint),
    startFaultProxy(stack.s3Endpoint),
  ]);
  proxies = { dynamodb, s3 };
  const service = await resolveService(STAGE);
  await provisionResources(service, { s3: stack.s3Endpoint, dynamodb: stack.dynamodbEndpoint });
  const lambdaPort = await freePort();
  const handlerEnv: Record<string, string> = {
    ...service.provider.environment,
    ...localCredentials,
    AWS_REGION: service.provider.region,
    AWS_ENDPOINT_URL_S3: s3.url,
    AWS_ENDPOINT_URL_DYNAMODB: dynamodb.url,
    AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${lambdaPort}`,
    JWT_KEYS_FILE: process.env.JWT_KEYS_FILE!,
    EXPORT_PART_SIZE_MIB: '5',
    // Each request reads the caller's token version: a route needs DynamoDB every time, not only
    // when a container's copy has expired, so what the fault breaks does not depend on timing.
    AUTH_USER_CACHE_SECONDS: '0',
  };
  // This file's in-process code (janitor, checks) works on the same stage, straight to the emulators.
  const inProcess = {
    ...handlerEnv,
    AWS_ENDPOINT_URL_S3: stack.s3Endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: stack.dynamodbEndpoint,
  };
  for (const [key, value] of Object.entries(inProcess)) {
    savedEnv[key] = process.env[key];
    process.env[key] = value;
  }
  const logFiles = [process.env.TEST_LOG_FILE, process.env.FAULTS_LOG_FILE].filter(Boolean) as string[];
  const offline = await startOffline(STAGE, handlerEnv, { lambdaPort }, (line) => {
    for (const file of logFiles) appendFileSync(file, `[faults] ${line}\n`);
  });
  apiUrl = offline.apiUrl;
  stopOffline = offline.stop;
  users = new UserStore(documentClient(), config().usersTable);
}, 120_000);

afterAll(async () => {
  await stopOffline?.();
  await Promise.all(Object.values(proxies ?? {}).map((proxy) => proxy.close()));
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  if (timings.length > 0) {
    process.stderr.write(
      `\nfault suite, slowest answer per scenario (bound ${BOUND_MS} ms):\n${timings
        .map(
          (t) =>
            `  ${t.scenario.padEnd(34)} ${Math.round(t.slowestMs).toString().padStart(6)} ms  ${t.route}`,
        )
        .join('\n')}\n`,
    );
  }
});

interface TestUser {
  username: string;
  password: string;
  token: string;
}

async function newUser(prefix: string): Promise<TestUser> {
  const username = `${prefix}-${randomUUID().slice(0, 8)}`;
  const password = `pw-${randomUUID()}`;
  await users.create(username, await hashPassword(password, { logN: 10, r: 8, p: 1 }));
  const signedIn = await ok('POST', '/auth/signin', undefined, { username, password });
  return { username, password, token: signedIn.token };
}

/** An upload through the API, its single part sent when `send` is set; returns the job id. */
async function newUpload(user: TestUser, filename: string, send = false): Promise<string> {
  const bytes = Buffer.from(`bytes of ${filename}`);
  const created = await ok('POST', '/upload', user.token, { filename, size: bytes.length }, 201);
  if (send) {
    const put = await fetch(created.parts[0].url, { method: 'PUT', body: bytes });
    if (put.status !== 200) throw new Error(`part PUT answered ${put.status}`);
  }
  return created.job.jobId;
}

/** An upload opened through the Companion routes as Uppy opens one; with its part 1 sent when `send` is set. */
async function newCompanionUpload(user: TestUser, filename: string, send = false): Promise<CompanionUpload> {
  const opened: { key: string; uploadId: string } = await ok('POST', '/s3/multipart', user.token, {
    filename,
    type: 'application/octet-stream',
    metadata: { name: filename },
  });
  if (!send) return opened;
  const signed = await ok('GET', companionPath(opened, '/1'), user.token);
  const put = await fetch(signed.url, { method: 'PUT', body: Buffer.from(`bytes of ${filename}`) });
  if (put.status !== 200) throw new Error(`part PUT answered ${put.status}`);
  return { ...opened, etag: put.headers.get('etag')! };
}

interface CompanionUpload {
  key: string;
  uploadId: string;
  etag?: string;
}

/** A Companion route of an upload: Uppy puts the key back in the query string. */
const companionPath = (upload: CompanionUpload, rest = '') =>
  `/s3/multipart/${encodeURIComponent(upload.uploadId)}${rest}?${new URLSearchParams({ key: upload.key })}`;

/** A QUEUED export as POST /export leaves it, with no worker started (as if the invoke was lost). */
async function queuedExport(username: string, filename: string): Promise<string> {
  const source = (await fileStore().head(`uploads/${username}/${filename}`))!;
  const jobId = newJobId();
  const now = new Date().toISOString();
  const partSize = exportStepSize(source.size, config().exports.partSize);
  await jobStore().create(
    {
      jobId,
      username,
      type: 'export',
      status: 'QUEUED',
      filename,
      key: `exports/${username}/${jobId}/${filename}`,
      size: source.size,
      partSize,
      partCount: Math.max(1, Math.ceil(source.size / partSize)),
      partsDone: 0,
      bytesDone: 0,
      createdAt: now,
      updatedAt: now,
      details: { format: 'raw', sourceKey: source.key, sourceEtag: source.etag, downloadName: filename },
    },
    jobId,
    exportQuota(),
  );
  return jobId;
}

interface Fixture {
  /** Most routes: each acts on its own job, so that the calls made at once do not race. */
  main: TestUser;
  /** DELETE /upload/kill aborts every upload of its caller. */
  uploadKiller: TestUser;
  /** POST /export/kill cancels every export of its caller. */
  exportKiller: TestUser;
  jobs: {
    parts: string;
    progress: string;
    progressEtag: string;
    complete: string;
    abort: string;
    cancel: string;
  };
  /** Uploads opened through the Companion routes (Uppy), one per route that acts on one. */
  companion: {
    sign: CompanionUpload;
    list: CompanionUpload;
    complete: CompanionUpload;
    abort: CompanionUpload;
  };
  sourceBytes: number;
}

const SOURCE = 'source.bin';

async function prepare(): Promise<Fixture> {
  const [main, uploadKiller, exportKiller] = await Promise.all([
    newUser('fault'),
    newUser('fault-uk'),
    newUser('fault-ek'),
  ]);
  const source = Buffer.from('the source file of the exports '.repeat(100));
  await Promise.all(
    [main, exportKiller].map((user) => fileStore().putObject(`uploads/${user.username}/${SOURCE}`, source)),
  );
  const [parts, progress, complete, abort] = await Promise.all([
    newUpload(main, 'parts.bin'),
    newUpload(main, 'progress.bin'),
    newUpload(main, 'complete.bin', true),
    newUpload(main, 'abort.bin', true),
    newUpload(uploadKiller, 'killed-1.bin', true),
    newUpload(uploadKiller, 'killed-2.bin'),
  ]);
  const progressJob = (await jobStore().get(main.username, progress!))!;
  // The part itself, so that the recorded ETag is S3's own.
  const signed = await fileStore().presignUploadParts(
    progressJob.key,
    progressJob.uploadId!,
    [{ partNumber: 1, size: progressJob.size }],
    300,
  );
  const put = await fetch(signed[0]!, { method: 'PUT', body: Buffer.alloc(progressJob.size, 1) });
  const [cancel] = await Promise.all([
    queuedExport(main.username, SOURCE),
    queuedExport(exportKiller.username, SOURCE),
    queuedExport(exportKiller.username, SOURCE),
  ]);
  const [sign, list, uppyComplete, uppyAbort] = await Promise.all([
    newCompanionUpload(main, 'uppy-sign.bin'),
    newCompanionUpload(main, 'uppy-list.bin', true),
    newCompanionUpload(main, 'uppy-complete.bin', true),
    newCompanionUpload(main, 'uppy-abort.bin', true),
  ]);
  return {
    main,
    uploadKiller,
    exportKiller,
    jobs: {
      parts: parts!,
      progress: progress!,
      progressEtag: put.headers.get('etag')!,
      complete: complete!,
      abort: abort!,
      cancel,
    },
    companion: { sign, list, complete: uppyComplete, abort: uppyAbort },
    sourceBytes: source.length,
  };
}

interface RouteCase {
  route: string;
  /** The dependencies the route calls (presigning calls nothing). */
  needs: Dependency[];
  /** Its answer when nothing is broken. */
  okStatus: number;
  send(f: Fixture): Promise<Answer>;
}

const form = (name: string) => {
  const body = new FormData();
  body.append('file', new Blob([Buffer.from(`form bytes of ${name}`)]), name);
  return body;
};

const ROUTES: RouteCase[] = [
  {
    route: 'POST /auth/signin',
    needs: ['dynamodb'],
    okStatus: 200,
    send: (f) =>
      call('POST', '/auth/signin', undefined, { username: f.main.username, password: f.main.password }),
  },
  {
    route: 'POST /upload (JSON)',
    needs: ['s3', 'dynamodb'],
    okStatus: 201,
    send: (f) => call('POST', '/upload', f.main.token, { filename: 'new-json.bin', size: 10 }),
  },
  {
    route: 'POST /upload (form)',
    needs: ['s3', 'dynamodb'],
    okStatus: 201,
    send: (f) => call('POST', '/upload', f.main.token, form('new-form.bin')),
  },
  {
    route: 'POST /upload/{id}/parts',
    needs: ['dynamodb'],
    okStatus: 200,
    send: (f) => call('POST', `/upload/${f.jobs.parts}/parts`, f.main.token, { partNumbers: [1] }),
  },
  {
    route: 'POST /upload/{id}/progress',
    needs: ['dynamodb'],
    okStatus: 200,
    send: (f) =>
      call('POST', `/upload/${f.jobs.progress}/progress`, f.main.token, {
        parts: [
          { partNumber: 1, etag: f.jobs.progressEtag, size: Buffer.from('bytes of progress.bin').length },
        ],
      }),
  },
  {
    route: 'POST /upload/{id}/complete',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('POST', `/upload/${f.jobs.complete}/complete`, f.main.token),
  },
  {
    route: 'DELETE /upload/{id}',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('DELETE', `/upload/${f.jobs.abort}`, f.main.token),
  },
  {
    route: 'DELETE /upload/kill',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('DELETE', '/upload/kill', f.uploadKiller.token),
  },
  {
    route: 'POST /export',
    needs: ['s3', 'dynamodb'],
    okStatus: 202,
    send: (f) => call('POST', '/export', f.main.token, { filename: SOURCE }),
  },
  {
    route: 'POST /export/kill',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('POST', '/export/kill', f.exportKiller.token),
  },
  {
    route: 'DELETE /export/{id}',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('DELETE', `/export/${f.jobs.cancel}`, f.main.token),
  },
  { route: 'GET /jobs', needs: ['dynamodb'], okStatus: 200, send: (f) => call('GET', '/jobs', f.main.token) },
  {
    route: 'GET /jobs/{id}',
    needs: ['dynamodb'],
    okStatus: 200,
    send: (f) => call('GET', `/jobs/${f.jobs.parts}`, f.main.token),
  },
  {
    route: 'GET /jobs/{id}?reconcile=true',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('GET', `/jobs/${f.jobs.parts}?reconcile=true`, f.main.token),
  },
  // Every route that checks a token reads the caller's token version from DynamoDB (revocation).
  {
    route: 'GET /files',
    needs: ['s3', 'dynamodb'],
    okStatus: 200,
    send: (f) => call('GET', '/files', f.main.token),
  },
  // The Companion routes, called as @uppy/aws-s3 calls them.
  {
    route: 'POST /s3/multipart',
    needs: ['s3', 'dynamodb'],
    okStatus: 200,
    send: (f) =>
      call('POST', '/s3/multipart', f.main.token, {
        filename: 'uppy-new.bin',
        type: 'application/octet-stream',
        metadata: { name: 'uppy-new.bin' },
      }),
  },
  {
    route: 'GET /s3/multipart/{id}/{partNumber}',
    needs: ['dynamodb'],
    okStatus: 200,
    send: (f) => call('GET', companionPath(f.companion.sign, '/1'), f.main.token),
  },
  {
    route: 'GET /s3/multipart/{id}',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('GET', companionPath(f.companion.list), f.main.token),
  },
  {
    route: 'POST /s3/multipart/{id}/complete',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) =>
      call('POST', companionPath(f.companion.complete, '/complete'), f.main.token, companionParts(f)),
  },
  {
    route: 'DELETE /s3/multipart/{id}',
    needs: ['dynamodb', 's3'],
    okStatus: 200,
    send: (f) => call('DELETE', companionPath(f.companion.abort), f.main.token),
  },
];

/** The body Uppy completes the Companion upload of the fixture with: its one part. */
const companionParts = (f: Fixture) => ({ parts: [{ PartNumber: 1, ETag: f.companion.complete.etag }] });

const pathOf = (route: string) => route.split(' ')[1]!.replace(/ \(.*$/, '');

function expectGoodAnswer(route: RouteCase, answer: Answer, broken: Dependency | undefined, timed = true) {
  const context = `${route.route} answered ${answer.status} in ${Math.round(answer.ms)} ms: ${answer.text.slice(0, 300)}`;
  // Never serverless-offline's crash answer, never a stack trace.
  expect({ context, leaked: /errorMessage|stackTrace|\n\s+at /.test(answer.text) }).toEqual({
    context,
    leaked: false,
  });
  if (timed) expect({ context, fast: answer.ms < BOUND_MS }).toEqual({ context, fast: true });
  const [method] = route.route.split(' ');
  checkResponse(
    method!,
    pathOf(route.route)
      .replace(/\{id\}/, '01AAAAAAAAAAAAAAAAAAAAAAAA')
      .replace(/\{partNumber\}/, '1'),
    answer.status,
    answer.body,
  );
  if (broken && route.needs.includes(broken)) {
    expect({ context, status: answer.status, code: answer.body?.error?.code }).toEqual({
      context,
      status: 503,
      code: 'ServiceUnavailable',
    });
    expect(answer.body.error).toEqual({
      code: 'ServiceUnavailable',
      message: expect.any(String),
      requestId: expect.any(String),
    });
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  } else {
    expect({ context, status: answer.status }).toEqual({ context, status: route.okStatus });
  }
}

/** Every job of these users, straight from the table. */
async function jobsOf(...people: TestUser[]): Promise<JobRecord[]> {
  const lists = await Promise.all(people.map((user) => jobStore().list(user.username, { limit: 100 })));
  return lists.flatMap((list) => list.jobs);
}

async function waitUntilSettled(people: TestUser[], timeoutMs = 30_000): Promise<JobRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await jobsOf(...people);
    if (jobs.every((job) => TERMINAL_STATUSES.has(job.status))) return jobs;
    if (Date.now() > deadline) {
      const stuck = jobs.filter((job) => !TERMINAL_STATUSES.has(job.status));
      throw new Error(`jobs not settled: ${stuck.map((job) => `${job.type} ${job.status}`).join(', ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * After the fault: the client retries its completion (as the CLI does), then a janitor that treats
 * everything as stale runs until nothing is left in between. Every job must be finished, and S3
 * must say what its status says.
 */
async function expectConverged(f: Fixture) {
  const retried = await call('POST', `/upload/${f.jobs.complete}/complete`, f.main.token);
  expect({ status: retried.status, job: retried.body?.job?.status }).toEqual({
    status: 200,
    job: 'COMPLETED',
  });
  // Uppy retries a completion that answered 5xx.
  const uppyRetried = await call(
    'POST',
    companionPath(f.companion.complete, '/complete'),
    f.main.token,
    companionParts(f),
  );
  expect({ status: uppyRetried.status, job: uppyRetried.body?.job?.status }).toEqual({
    status: 200,
    job: 'COMPLETED',
  });

  const people = [f.main, f.uploadKiller, f.exportKiller];
  const settings = {
    uploadIdleSeconds: 0,
    stuckSeconds: 0,
    orphanGraceSeconds: 0,
    maxExportRestarts: 3,
    prefixes: people.flatMap((user) => [`uploads/${user.username}/`, `exports/${user.username}/`]),
  };
  const janitor = (now: number) =>
    janitorOver(
      people.map((user) => user.username),
      { settings, now },
    );
  // Exports whose worker is alive finish on their own first (a janitor would only race them).
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const live = (await jobsOf(...people)).filter(
      (job) =>
        job.type === 'export' &&
        (job.leaseUntil ?? 0) > Date.now() / 1000 &&
        !TERMINAL_STATUSES.has(job.status),
    );
    if (live.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  let jobs: JobRecord[] = [];
  // Each round may restart an export whose worker has not finished yet (on a loaded machine a
  // restarted worker can take longer than a round); after maxExportRestarts restarts the janitor
  // fails it. So the janitor alone converges every job within maxExportRestarts + 2 rounds.
  const reports: unknown[] = [];
  // Past every lease: a worker that died during the fault without giving its lease back (DynamoDB
  // was down) holds its job until the lease runs out, EXPORT_LEASE_SECONDS (180 s) after its last
  // heartbeat; a janitor only a minute ahead left such an export RUNNING (CI, once). Whatever was
  // just written counts as idle too.
  const ahead = (config().exports.leaseSeconds + 60) * 1000;
  for (let round = 1; ; round++) {
    reports.push(await janitor(Date.now() + ahead));
    try {
      jobs = await waitUntilSettled(people, 15_000);
      break;
    } catch (error) {
      if (round === settings.maxExportRestarts + 2) {
        const stuck = (await jobsOf(...people)).filter((job) => !TERMINAL_STATUSES.has(job.status));
        throw new Error(
          `${(error as Error).message} after ${round} janitor rounds: ${JSON.stringify({ stuck, reports })}`,
        );
      }
    }
  }
  // One more pass for anything the last one left behind (an orphan from a restarted worker).
  await janitor(Date.now() + ahead);

  const store = fileStore();
  for (const job of jobs) {
    const what = `${job.type} ${job.filename} ${job.status}`;
    if (job.type === 'upload') {
      const object = await store.head(job.key);
      if (job.status === 'COMPLETED') expect({ what, size: object?.size }).toEqual({ what, size: job.size });
      if (job.uploadId)
        expect({ what, parts: await store.listParts(job.key, job.uploadId) }).toEqual({
          what,
          parts: undefined,
        });
    } else {
      const output = await store.list(`exports/${job.username}/${job.jobId}/`);
      expect({ what, objects: output.length }).toEqual({ what, objects: job.status === 'SUCCEEDED' ? 1 : 0 });
    }
  }
  for (const user of people) {
    for (const prefix of [`uploads/${user.username}/`, `exports/${user.username}/`]) {
      expect({ prefix, open: await store.listOpenUploads(prefix) }).toEqual({ prefix, open: [] });
    }
  }
  // The sources are never touched.
  for (const user of [f.main, f.exportKiller]) {
    expect((await store.head(`uploads/${user.username}/${SOURCE}`))?.size).toBe(f.sourceBytes);
  }
}

interface Scenario {
  name: string;
  dependency: Dependency;
  mode: FaultMode;
  options?: FaultOptions;
  /** The dependency still answers in time: every route answers as usual. */
  harmless?: boolean;
  /** Functions start cold here (seconds each when all start at once on a busy machine): not timed. */
  cold?: boolean;
}

const SCENARIOS: Scenario[] = [
  // The baseline, which also warms every function up so that no cold start is timed under a fault.
  { name: 'no fault', dependency: 'dynamodb', mode: 'pass', harmless: true, cold: true },
  { name: 'DynamoDB refuses connections', dependency: 'dynamodb', mode: 'down' },
  { name: 'DynamoDB resets connections', dependency: 'dynamodb', mode: 'refuse' },
  { name: 'DynamoDB blackholed', dependency: 'dynamodb', mode: 'blackhole' },
  {
    name: 'DynamoDB 2.5 s late (past its timeout)',
    dependency: 'dynamodb',
    mode: 'delay',
    options: { delayMs: 2500 },
  },
  {
    name: 'DynamoDB 300 ms late',
    dependency: 'dynamodb',
    mode: 'delay',
    options: { delayMs: 300 },
    harmless: true,
  },
  { name: 'DynamoDB cut mid-answer', dependency: 'dynamodb', mode: 'cut', options: { cutAfterBytes: 100 } },
  { name: 'S3 refuses connections', dependency: 's3', mode: 'down' },
  { name: 'S3 resets connections', dependency: 's3', mode: 'refuse' },
  { name: 'S3 blackholed', dependency: 's3', mode: 'blackhole' },
  { name: 'S3 3.5 s late (past its timeout)', dependency: 's3', mode: 'delay', options: { delayMs: 3500 } },
  { name: 'S3 cut mid-answer', dependency: 's3', mode: 'cut', options: { cutAfterBytes: 100 } },
];

describe.each(SCENARIOS)('$name', (scenario) => {
  it('every route answers in time, 503 with Retry-After where it needs the dependency; jobs converge after', async () => {
    const fixture = await prepare();
    const proxy = proxies[scenario.dependency];
    await proxy.set(scenario.mode, { ...scenario.options, killExisting: true });
    let answers: Answer[];
    try {
      answers = await Promise.all(ROUTES.map((route) => route.send(fixture)));
    } finally {
      await proxy.set('pass', { killExisting: true });
    }
    const slowest = answers.reduce(
      (worst, answer, index) => (answer.ms > answers[worst]!.ms ? index : worst),
      0,
    );
    timings.push({ scenario: scenario.name, slowestMs: answers[slowest]!.ms, route: ROUTES[slowest]!.route });
    ROUTES.forEach((route, index) => {
      expectGoodAnswer(
        route,
        answers[index]!,
        scenario.harmless ? undefined : scenario.dependency,
        !scenario.cold,
      );
    });
    await expectConverged(fixture);
  }, 90_000);
});

describe('an answer lost after the dependency did the work', () => {
  it('S3 completes the upload but its answer is cut: 503, then the retried completion records COMPLETED', async () => {
    const user = await newUser('fault-lost');
    const jobId = await newUpload(user, 'lost-answer.bin', true);
    const job = (await jobStore().get(user.username, jobId))!;
    // Only CompleteMultipartUpload (POST …?uploadId=); ListParts (GET) still answers.
    await proxies.s3.set('cut', { cutAfterBytes: 0, match: /^POST [^ ]+\?uploadId=/m, killExisting: true });
    let answer: Answer;
    try {
      answer = await call('POST', `/upload/${jobId}/complete`, user.token);
    } finally {
      await proxies.s3.set('pass', { killExisting: true });
    }
    expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({
      status: 503,
      code: 'ServiceUnavailable',
    });
    expect(answer.ms).toBeLessThan(BOUND_MS);
    // S3 did it; the table does not know yet.
    expect((await fileStore().head(job.key))?.size).toBe(job.size);
    expect((await jobStore().get(user.username, jobId))?.status).toBe('COMPLETING');

    const retried = await call('POST', `/upload/${jobId}/complete`, user.token);
    expect({ status: retried.status, job: retried.body?.job?.status }).toEqual({
      status: 200,
      job: 'COMPLETED',
    });
    expect(await fileStore().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
  }, 60_000);

  // The create must not abort the multipart upload when its job write may have landed (a timeout or
  // a lost answer): the job the retry names would then take no parts.
  it('DynamoDB writes the new upload but its answer is cut: 503, then a retry names the job, which resumes', async () => {
    const user = await newUser('fault-lost');
    const filename = 'lost-create.bin';
    const bytes = Buffer.from('bytes of a lost create');
    await proxies.dynamodb.set('cut', { cutAfterBytes: 0, match: /TransactWriteItems/, killExisting: true });
    let answer: Answer;
    try {
      answer = await call('POST', '/upload', user.token, { filename, size: bytes.length });
    } finally {
      await proxies.dynamodb.set('pass', { killExisting: true });
    }
    expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({
      status: 503,
      code: 'ServiceUnavailable',
    });
    expect(answer.ms).toBeLessThan(BOUND_MS);

    // The retry learns which job holds the file, and carries on with it.
    const again = await call('POST', '/upload', user.token, { filename, size: bytes.length });
    expect({ status: again.status, code: again.body?.error?.code }).toEqual({
      status: 409,
      code: 'UploadInProgress',
    });
    const jobId = again.body.error.details.jobId;
    const signed = await ok('POST', `/upload/${jobId}/parts`, user.token, { partNumbers: [1] });
    expect((await fetch(signed.parts[0].url, { method: 'PUT', body: bytes })).status).toBe(200);
    const completed = await ok('POST', `/upload/${jobId}/complete`, user.token);
    expect(completed.job.status).toBe('COMPLETED');
    expect((await fileStore().head(`uploads/${user.username}/${filename}`))?.size).toBe(bytes.length);
    expect(await fileStore().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
  }, 60_000);
});

describe('an export worker meeting a passing fault', () => {
  // The worker runs in serverless-offline and restarts itself through its Lambda invoke API, as in
  // AWS; nothing here runs the janitor.
  it('S3 refuses connections when the export starts: the worker restarts itself after its pause and finishes', async () => {
    const user = await newUser('fault-restart');
    const source = randomBytes(3 * config().exports.partSize + 4321);
    await fileStore().putObject(`uploads/${user.username}/restart.bin`, source);

    // The route reads the source in S3 first; the fault starts as it answers, before the worker's
    // first S3 call (the worker claims the job in DynamoDB before it touches S3).
    const jobId: string = (await ok('POST', '/export', user.token, { filename: 'restart.bin' }, 202)).job
      .jobId;
    await proxies.s3.set('refuse', { killExisting: true });
    try {
      // Refused until the worker has met the fault and recorded its own restart.
      const until = Date.now() + 30_000;
      let job = (await jobStore().get(user.username, jobId))!;
      while (!(job.restarts ?? 0) && !TERMINAL_STATUSES.has(job.status) && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        job = (await jobStore().get(user.username, jobId))!;
      }
      expect({ status: job.status, restarts: job.restarts }).toEqual({ status: 'RUNNING', restarts: 1 });
    } finally {
      await proxies.s3.set('pass');
    }

    const until = Date.now() + 60_000;
    let job = (await jobStore().get(user.username, jobId))!;
    while (!TERMINAL_STATUSES.has(job.status) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      job = (await jobStore().get(user.username, jobId))!;
    }
    expect(job).toMatchObject({ status: 'SUCCEEDED', restarts: 1 });
    expect(Buffer.compare(Buffer.from((await fileStore().getObjectBytes(job.key))!), source)).toBe(0);
    expect(await fileStore().listOpenUploads(`exports/${user.username}/`)).toEqual([]);
  }, 120_000);
});
