import { randomBytes } from 'node:crypto';
import { hashPassword } from '../../lib/auth/passwords.ts';
import { UserStore } from '../../lib/auth/user-store.ts';
import type { JanitorReport, JanitorSettings } from '../../lib/janitor/janitor.ts';
import { asFunction } from '../../tests/support/as-function.ts';
import type { FaultMode, FaultProxy } from '../fault-proxy.ts';
import { checkInvariants, Outside, TERMINAL } from './checks.ts';
import {
  type ExportRecord,
  OP_KINDS,
  type OpKind,
  type SessionRecord,
  type UploadRecord,
  type Violation,
} from './model.ts';
import {
  janitorBait,
  OP_WEIGHTS,
  type OpContext,
  outcomeOf,
  runOp,
  type SoakUser,
  seedFile,
  soakClient,
} from './ops.ts';
import { Prng } from './prng.ts';
import { Recorder } from './recorder.ts';

/**
 * The soak: many users uploading, killing, completing, exporting and cancelling at once, with
 * choices from a seeded PRNG; then a settle, one janitor run, and invariants read straight from S3
 * and DynamoDB. `npm run soak` (scripts/soak.ts) and tests/e2e/soak.test.ts both run this.
 */

export interface SoakTarget {
  apiUrl: string;
  region: string;
  s3Endpoint: string;
  dynamodbEndpoint: string;
  bucket: string;
  tables: { jobs: string; users: string };
}

export interface SoakOptions {
  target: SoakTarget;
  seed: number;
  users: number;
  /** Operations each user runs at once (default 2): a user's kill then also meets its other uploads. */
  lanes?: number;
  /** Stop starting operations after this many (over all users). */
  ops?: number;
  /** Stop starting operations after this long; running ones finish. */
  durationMs?: number;
  /** Longest wait for unfinished jobs before the janitor, and again after it (default 60 s). */
  settleMs?: number;
  /** Longest wait for one export inside an operation (default 60 s). */
  exportWaitMs?: number;
  /**
   * How long after a sign-out its tokens must be refused everywhere: the stack's
   * AUTH_USER_CACHE_SECONDS and a margin (default 35 s, for the default 30 s).
   */
  signOutWindowMs?: number;
  /**
   * Runs the janitor in this process (the handlers' configuration must be in process.env), with
   * every limit at `janitorStaleSeconds` (default 0: anything idle, stuck or orphaned is stale).
   * False skips it.
   */
  janitor?: boolean;
  janitorStaleSeconds?: number;
  /** Look for orphan multipart uploads in the whole bucket, not only under the soak users' prefixes. */
  wholeBucket?: boolean;
  /** Prefix of the soak users' names; a random tag is added so runs never share users. */
  userPrefix?: string;
  /**
   * TCP fault proxies in front of the handlers' dependencies (and of the presigned URLs' S3): while
   * operations run, one of them breaks now and then for up to 2.5 s (refusing, swallowing or cutting
   * connections). Dependency 503s are then expected, and the janitor runs as if every lease had run
   * out, since a worker that lost DynamoDB cannot give its lease up.
   */
  faults?: Record<string, FaultProxy>;
  /**
   * Kills the API (serverless-offline, its export workers with it) and starts it again: while
   * operations run, every 20-40 s. Requests in flight and running workers die at whatever point they
   * were; the janitor then runs as if every lease had run out, as with `faults`.
   */
  crashApi?: () => Promise<void>;
  log?: (line: string) => void;
}

export interface SoakReport {
  seed: number;
  users: string[];
  lanes: number;
  /** Operations by kind, then by outcome. */
  ops: Record<string, Record<string, number>>;
  opsTotal: number;
  bytesUploaded: number;
  bytesDownloaded: number;
  /** Every HTTP answer any client got, by call and status (retried attempts included). */
  statuses: Record<string, number>;
  statusClasses: Record<string, number>;
  /** API 5xx answers, the dependency 503s below apart. */
  apiServerErrors: number;
  /** API answers of 503 ServiceUnavailable with Retry-After: a dependency too slow; clients retry them. */
  dependencyUnavailable: number;
  networkErrors: number;
  /** Requests that got no answer within the client's request timeout (28 s for API calls). */
  timeouts: number;
  /** Faults injected, by dependency and mode (with `faults`). */
  faultsInjected?: Record<string, number>;
  /** How many times the API was killed and started again (with `crashApi`), and how long it was down. */
  apiCrashes?: { count: number; downMs: number[] };
  /** Jobs by type and status in DynamoDB at the end. */
  finalStates: Record<string, Record<string, number>>;
  uploadsVerified: number;
  exportsVerified: number;
  /** moto's 500s on parts PUT to multipart uploads already aborted (real S3: 404 NoSuchUpload); not counted as faults. */
  emulatorPartErrors: number;
  /** Export jobs created although their POST /export gave the client no answer with them. */
  unansweredExports: number;
  /** Open multipart uploads no unfinished job owned before the janitor ran (besides the planted ones). */
  unownedBeforeJanitor: string[];
  janitor?: JanitorReport;
  /** Phases in ms. */
  timings: { ops: number; settle: number; janitor: number; checks: number; total: number };
  violations: Violation[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Soak users, with cheap scrypt parameters (the PHC string carries them) so that creating them is quick. */
async function createUsers(options: SoakOptions, recorder: Recorder): Promise<SoakUser[]> {
  const { target } = options;
  const outside = new Outside({ ...target, jobsTable: target.tables.jobs });
  const store = new UserStore(outside.db, target.tables.users);
  const tag = randomBytes(3).toString('hex');
  try {
    return await Promise.all(
      Array.from({ length: options.users }, async (_, index) => {
        const username = `${options.userPrefix ?? 'soak'}-${tag}-u${index + 1}`;
        const password = `pw-${randomBytes(12).toString('hex')}`;
        await store.create(username, await hashPassword(password, { logN: 10, r: 8, p: 1 }));
        // The lanes share the client, which renews the token as it runs short: each renewed token is
        // the user's too, for the recorder.
        const client = soakClient(target.apiUrl, recorder, {
          onTokenRenewed: (renewed) => recorder.owners.set(renewed.token, username),
        });
        const { token } = await client.signIn(username, password);
        recorder.owners.set(token, username);
        return { username, password, client, files: [] };
      }),
    );
  } finally {
    outside.close();
  }
}

/** Waits until every job of the soak users is finished in DynamoDB, or `ms` pass; the unfinished ones. */
async function settle(
  outside: Outside,
  users: SoakUser[],
  ms: number,
  except?: (job: { status: string }) => boolean,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const unfinished = (await Promise.all(users.map((user) => outside.jobs(user.username))))
      .flat()
      .filter((job) => !TERMINAL.has(job.status) && !except?.(job));
    if (unfinished.length === 0 || Date.now() > deadline) return unfinished;
    await sleep(500);
  }
}

const FAULTS: readonly FaultMode[] = ['refuse', 'blackhole', 'cut'];

/**
 * Until `over()`: every 1-5 s one proxy breaks (a mode of FAULTS) for 0.2-2.5 s, then passes again;
 * the choices come from the seed. Counts what it injected into `injected`.
 */
async function breakNowAndThen(
  proxies: Record<string, FaultProxy>,
  seed: number,
  injected: Record<string, number>,
  over: () => boolean,
) {
  const rng = new Prng(seed, 'faults');
  const named = Object.entries(proxies);
  while (!over()) {
    await sleep(rng.int(1000, 5000));
    if (over()) break;
    const [name, proxy] = rng.pick(named);
    const mode = rng.pick(FAULTS);
    await proxy.set(mode, {
      killExisting: true,
      ...(mode === 'cut' ? { cutAfterBytes: rng.int(0, 4096) } : {}),
    });
    injected[`${name} ${mode}`] = (injected[`${name} ${mode}`] ?? 0) + 1;
    await sleep(rng.int(200, 2500));
    // Its connections reset as it heals: a blackhole swallowed request bytes, which TCP would have
    // resent, so what they carry next would be torn.
    await proxy.set('pass', { killExisting: true });
  }
}

/** Until `over()`: every 20-40 s (seeded), the API crashes and starts again; each restart's time in `crashes`. */
async function crashNowAndThen(
  crashApi: () => Promise<void>,
  seed: number,
  crashes: { count: number; downMs: number[] },
  over: () => boolean,
  log: (line: string) => void,
) {
  const rng = new Prng(seed, 'crashes');
  while (!over()) {
    const wait = rng.int(20_000, 40_000);
    const until = Date.now() + wait;
    while (!over() && Date.now() < until) await sleep(250);
    if (over()) break;
    const started = Date.now();
    await crashApi();
    crashes.count++;
    crashes.downMs.push(Date.now() - started);
    log(`API crashed and started again (down ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const started = Date.now();
  const lanes = options.lanes ?? 2;
  const settleMs = options.settleMs ?? 60_000;
  if (options.ops === undefined && options.durationMs === undefined) {
    throw new Error('give the soak a bound: ops, durationMs or both');
  }
  const { target } = options;
  const recorder = new Recorder(target.apiUrl);
  const users = await createUsers(options, recorder);
  log(`${users.length} users signed in (${users.map((user) => user.username).join(', ')})`);
  // A client renews its token only when it makes a call, and an expired token cannot be renewed: the
  // settles, the janitor and the checks go minutes without a call on the soak's short tokens. So the
  // tokens are renewed when due meanwhile, as the web console's timer does for an idle page.
  const keepTokens = setInterval(() => {
    for (const user of users) void user.client.accessToken().catch(() => undefined);
  }, 5_000).unref();

  const uploads: UploadRecord[] = [];
  const exports: ExportRecord[] = [];
  const sessions: SessionRecord[] = [];
  const context = (user: SoakUser, rng: Prng, opId: string): OpContext => ({
    user,
    rng,
    recorder,
    apiUrl: target.apiUrl,
    opId,
    uploads,
    exports,
    sessions,
    exportWaitMs: options.exportWaitMs ?? 60_000,
    signOutWindowMs: options.signOutWindowMs ?? 35_000,
  });
  const ops: Record<string, Record<string, number>> = Object.fromEntries(OP_KINDS.map((kind) => [kind, {}]));
  let opsStarted = 0;
  let opsDone = 0;
  let deadline = Infinity;
  const mayStart = () => (options.ops === undefined || opsStarted < options.ops) && Date.now() < deadline;

  // One small file per user first, so that exports have something to read from the start.
  const setup: Record<string, number> = {};
  await Promise.all(
    users.map(async (user, userIndex) => {
      const ctx = context(user, new Prng(options.seed, `user ${userIndex} setup`), `u${userIndex + 1}-setup`);
      const outcome = await seedFile(ctx).catch((error: unknown) => `threw ${outcomeOf(error)}`);
      setup[outcome] = (setup[outcome] ?? 0) + 1;
    }),
  );
  ops.setup = setup;
  // The clock starts after the setup, whose first calls also wake every handler (slow on a busy machine).
  if (options.durationMs !== undefined) deadline = Date.now() + options.durationMs;

  const lane = async (user: SoakUser, userIndex: number, laneIndex: number) => {
    const rng = new Prng(options.seed, `user ${userIndex} lane ${laneIndex}`);
    for (let n = 1; mayStart(); n++) {
      opsStarted++;
      const kind: OpKind = rng.weighted(OP_WEIGHTS);
      const ctx = context(
        user,
        rng,
        `u${userIndex + 1}l${laneIndex + 1}-${String(n).padStart(3, '0')}-${kind}`,
      );
      let outcome: string;
      try {
        outcome = await runOp(kind, ctx);
      } catch (error) {
        // An op's own expectations are in its outcome; a throw here is the soak's or the client's bug.
        outcome = `threw ${outcomeOf(error)}: ${(error as Error).message}`;
      }
      const byOutcome = ops[kind]!;
      byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
      opsDone++;
      if (opsDone % 25 === 0)
        log(`${opsDone} operations done (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
  };
  let lanesDone = false;
  const faultsInjected: Record<string, number> = {};
  const chaos = options.faults
    ? breakNowAndThen(options.faults, options.seed, faultsInjected, () => lanesDone)
    : undefined;
  const apiCrashes = { count: 0, downMs: [] as number[] };
  const crashes = options.crashApi
    ? crashNowAndThen(options.crashApi, options.seed, apiCrashes, () => lanesDone, log)
    : undefined;
  await Promise.all(
    users.flatMap((user, userIndex) =>
      Array.from({ length: lanes }, (_, laneIndex) => lane(user, userIndex, laneIndex)),
    ),
  );
  lanesDone = true;
  await Promise.all([chaos, crashes]);
  const outside = new Outside({ ...target, jobsTable: target.tables.jobs });
  try {
    if (options.janitor !== false) {
      log(`${opsDone} operations done; leaving a crashed upload and an orphan multipart upload per user`);
      const bait: Record<string, number> = {};
      await Promise.all(
        users.map(async (user, userIndex) => {
          const rng = new Prng(options.seed, `user ${userIndex} janitor`);
          const ctx = context(user, rng, `u${userIndex + 1}-janitor`);
          for (const outcome of await janitorBait(ctx, outside.s3, target.bucket)) {
            const label = outcome.startsWith('orphan') ? 'orphan multipart upload made in S3' : outcome;
            bait[label] = (bait[label] ?? 0) + 1;
          }
        }),
      );
      ops['janitor-bait'] = bait;
    }
    const opsEnded = Date.now();
    log(`operations done in ${((opsEnded - started) / 1000).toFixed(1)} s; settling`);

    // Uploads left UPLOADING on purpose (the "crash" operations) are the janitor's to end.
    const leftOver = await settle(outside, users, settleMs, (job) => job.status === 'UPLOADING');
    if (leftOver.length > 0) {
      log(
        `still unfinished after ${settleMs / 1000} s: ${leftOver.map((job) => `${job.jobId} ${job.status}`).join(', ')}`,
      );
    }
    const settled = Date.now();

    let janitor: JanitorReport | undefined;
    const unownedBeforeJanitor: string[] = [];
    if (options.janitor !== false) {
      const stale = options.janitorStaleSeconds ?? 0;
      const { config } = await import('../../lib/config.ts');
      const { leaseSeconds } = config().exports;
      const { FORM_WRITER_GRACE_SECONDS } = await import('../../lib/uploads/uploads.ts');
      // A job must have been idle for longer than the limit: wait out the limit from the last op.
      // After crashes, the dead workers' leases too (the restarted worker's claim reads the real
      // clock, so the janitor's clock cannot be set ahead for them as for faults).
      const idle = Math.max(stale, options.crashApi ? leaseSeconds : 0);
      // After faults the janitor's clock runs ahead (below); on it, too, a form upload whose request
      // died with the API must be past the time that request could still be writing its file.
      const ahead = options.faults ? (leaseSeconds + 60) * 1000 : 0;
      const formWriterEnded = options.crashApi ? FORM_WRITER_GRACE_SECONDS * 1000 - ahead : 0;
      const wait = opsEnded + Math.max(idle * 1000, formWriterEnded) + 1000 - Date.now();
      if (wait > 0) await sleep(wait);
      // Multipart uploads no unfinished job owns, other than the planted ones: left by a request
      // that failed halfway. The janitor should abort them; the report names them.
      const owned = new Set(
        (await Promise.all(users.map((user) => outside.jobs(user.username))))
          .flat()
          .flatMap((job) => (job.uploadId && !TERMINAL.has(job.status) ? [job.uploadId] : [])),
      );
      for (const user of users) {
        for (const prefix of [`uploads/${user.username}/`, `exports/${user.username}/`]) {
          for (const open of await outside.openUploads(prefix)) {
            if (!owned.has(open.UploadId!) && !open.Key!.endsWith('-orphan.bin'))
              unownedBeforeJanitor.push(`${open.Key} ${open.UploadId} (${open.Initiated?.toISOString()})`);
          }
        }
      }
      // Imported late: the handlers' configuration is read from process.env on first use.
      const { runJanitor, janitorSettings } = await import('../../lib/janitor/janitor.ts');
      // The configured retention stays: SUCCEEDED exports must keep their output for the checks.
      const settings: JanitorSettings = {
        ...janitorSettings(),
        uploadIdleSeconds: stale,
        stuckSeconds: stale,
        orphanGraceSeconds: stale,
        maxExportRestarts: 3,
        prefixes: options.wholeBucket
          ? ['uploads/', 'exports/']
          : users.flatMap((user) => [`uploads/${user.username}/`, `exports/${user.username}/`]),
      };
      // After faults, a worker may hold a lease it could not give up (DynamoDB was gone): the janitor
      // runs as if every lease had run out, as it would once they had (`ahead`, above).
      // As the janitor function, so that the IAM check holds its calls to the janitor's role.
      janitor = await asFunction('janitor', () => runJanitor(settings, Date.now() + ahead));
      log(`janitor: ${JSON.stringify(janitor)}`);
      // Exports the janitor restarted or whose cancel it finished need a moment to end.
      await settle(outside, users, settleMs);
    }
    const janitorDone = Date.now();

    const checks = await checkInvariants({
      outside,
      users,
      uploads,
      exports,
      sessions,
      recorder,
      dependencyFaults: options.faults !== undefined,
      orphanPrefixes: options.wholeBucket
        ? ['']
        : users.flatMap((user) => [`uploads/${user.username}/`, `exports/${user.username}/`]),
    });
    const checked = Date.now();
    return {
      seed: options.seed,
      users: users.map((user) => user.username),
      lanes,
      ops: Object.fromEntries(Object.entries(ops).filter(([, outcomes]) => Object.keys(outcomes).length > 0)),
      opsTotal: opsDone,
      bytesUploaded: recorder.bytesUp,
      bytesDownloaded: recorder.bytesDown,
      statuses: recorder.table(),
      statusClasses: recorder.classes(),
      apiServerErrors: recorder.apiServerErrors().length,
      dependencyUnavailable: checks.dependencyUnavailable,
      networkErrors: recorder.networkErrors,
      timeouts: recorder.timeouts.length,
      finalStates: checks.finalStates,
      uploadsVerified: checks.uploadsVerified,
      exportsVerified: checks.exportsVerified,
      emulatorPartErrors: checks.emulatorPartErrors,
      unansweredExports: checks.unansweredExports,
      unownedBeforeJanitor,
      ...(options.faults ? { faultsInjected } : {}),
      ...(options.crashApi ? { apiCrashes } : {}),
      ...(janitor ? { janitor } : {}),
      timings: {
        ops: opsEnded - started,
        settle: settled - opsEnded,
        janitor: janitorDone - settled,
        checks: checked - janitorDone,
        total: checked - started,
      },
      violations: checks.violations,
    };
  } finally {
    clearInterval(keepTokens);
    outside.close();
  }
}

const MB = 1e6;

/** The report as text for a terminal. */
export function formatReport(report: SoakReport): string {
  const lines: string[] = [];
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  lines.push(
    `soak: seed ${report.seed}, ${report.users.length} users x ${report.lanes} lanes, ${report.opsTotal} operations in ${seconds(report.timings.ops)}`,
  );
  lines.push('operations (kind: outcome x count):');
  for (const [kind, outcomes] of Object.entries(report.ops)) {
    const total = Object.values(outcomes).reduce((sum, count) => sum + count, 0);
    const detail = Object.entries(outcomes)
      .sort(([, a], [, b]) => b - a)
      .map(([outcome, count]) => `${outcome} x${count}`)
      .join('; ');
    lines.push(`  ${kind.padEnd(14)} ${String(total).padStart(4)}  ${detail}`);
  }
  lines.push(
    `bytes: ${(report.bytesUploaded / MB).toFixed(1)} MB uploaded (part PUTs and forms), ${(report.bytesDownloaded / MB).toFixed(1)} MB of exports downloaded and verified`,
  );
  lines.push(
    `HTTP answers: ${Object.entries(report.statusClasses)
      .map(([label, count]) => `${label} ${count}`)
      .join(
        ', ',
      )}; API 5xx: ${report.apiServerErrors}; dependency 503s (retried): ${report.dependencyUnavailable}; S3 emulator 500s on parts of aborted uploads: ${report.emulatorPartErrors}`,
  );
  for (const [call, count] of Object.entries(report.statuses)) lines.push(`  ${call.padEnd(40)} ${count}`);
  lines.push(
    `final job states: ${Object.entries(report.finalStates)
      .map(
        ([type, states]) =>
          `${type} ${Object.entries(states)
            .map(([status, count]) => `${status} ${count}`)
            .join(', ')}`,
      )
      .join('; ')}`,
  );
  lines.push(
    `verified from outside: ${report.uploadsVerified} COMPLETED objects byte-identical, ${report.exportsVerified} SUCCEEDED downloads identical to their sources`,
  );
  if (report.unansweredExports > 0) {
    lines.push(
      `export jobs created whose POST /export answered 5xx or never answered: ${report.unansweredExports}`,
    );
  }
  if (report.unownedBeforeJanitor.length > 0) {
    lines.push(
      `multipart uploads no job owned before the janitor (besides the planted ones): ${report.unownedBeforeJanitor.join('; ')}`,
    );
  }
  if (report.faultsInjected) {
    lines.push(
      `faults injected: ${Object.entries(report.faultsInjected)
        .map(([fault, count]) => `${fault} x${count}`)
        .join(', ')}`,
    );
  }
  if (report.apiCrashes) {
    lines.push(
      `API crashes: ${report.apiCrashes.count} (down ${report.apiCrashes.downMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ') || 'never'})`,
    );
  }
  if (report.janitor) lines.push(`janitor: ${JSON.stringify(report.janitor)}`);
  const t = report.timings;
  lines.push(
    `time: ops ${seconds(t.ops)}, settle ${seconds(t.settle)}, janitor ${seconds(t.janitor)}, checks ${seconds(t.checks)}, total ${seconds(t.total)}`,
  );
  lines.push(`violations: ${report.violations.length}`);
  for (const violation of report.violations) {
    const who = [violation.username, violation.jobId, violation.status].filter(Boolean).join(' ');
    lines.push(`  [${violation.rule}] ${who ? `${who}: ` : ''}${violation.detail}`);
    if (violation.steps?.length) lines.push(`      steps: ${violation.steps.join(' -> ')}`);
  }
  return lines.join('\n');
}
