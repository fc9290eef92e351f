import type { WorkerEvent } from '../../lib/exports/exports.ts';
import type { StartExportWorker } from '../../lib/exports/revive.ts';
import {
  type JanitorReport,
  type JanitorSettings,
  janitorSettings,
  runJanitor,
} from '../../lib/janitor/janitor.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { JobRecord } from '../../lib/jobs/jobs-table.ts';
import { asFunction } from './as-function.ts';

export interface JanitorRun {
  /** Over janitorSettings(); `prefixes` defaults to the users' uploads/ and exports/ folders. */
  settings?: Partial<JanitorSettings>;
  /** The janitor's clock (default: now). */
  now?: number;
  /** Default: the real start, an invoke of the worker function in serverless-offline. */
  startExportWorker?: StartExportWorker;
  /**
   * What the janitor's scan answers, given the users' active jobs as they are now: a view read
   * earlier, or a hook that acts while the janitor waits for it.
   */
  scan?: (theirs: () => Promise<JobRecord[]>) => Promise<JobRecord[]>;
}

/**
 * The janitor over `usernames`' jobs and folders only, as the janitor function (for the IAM check).
 *
 * The stack's test files run side by side on one stack (jest.config.js), and their jobs are made to
 * look stale on purpose: clocks moved back, leases expired. A janitor that scanned every active job,
 * or swept another user's folder, would expire, restart or fail another file's jobs mid-test. So the
 * tests run the janitor only through here (tests/unit/test-isolation.test.ts holds them to it), and
 * a prefix outside the users' folders is refused. (The scan is narrowed through runJanitor's own
 * argument, not a spy: two janitors may run at once.)
 */
export async function janitorOver(
  usernames: string | readonly string[],
  { settings = {}, now = Date.now(), startExportWorker, scan }: JanitorRun = {},
): Promise<JanitorReport> {
  const owners = new Set(typeof usernames === 'string' ? [usernames] : usernames);
  const folders = [...owners].flatMap((username) => [`uploads/${username}/`, `exports/${username}/`]);
  const prefixes = settings.prefixes ?? folders;
  const outside = prefixes.filter((prefix) => !folders.some((folder) => prefix.startsWith(folder)));
  if (outside.length > 0)
    throw new Error(`janitorOver: ${outside.join(', ')} is outside the folders of ${[...owners].join(', ')}`);

  const theirs = async () => (await jobStore().allActive()).filter((job) => owners.has(job.username));
  return asFunction('janitor', () =>
    runJanitor({ ...janitorSettings(), ...settings, prefixes }, now, startExportWorker, () =>
      scan ? scan(theirs) : theirs(),
    ),
  );
}

/**
 * The janitor over one user's jobs and no folder, with the workers it starts handed to the test
 * (which runs them in-process) instead of invoked.
 */
export async function janitorFor(username: string, overrides: Partial<JanitorSettings> = {}) {
  const started: WorkerEvent[] = [];
  const report = await janitorOver(username, {
    settings: { prefixes: [], ...overrides },
    startExportWorker: async (event) => {
      started.push(event);
    },
  });
  return { report, started };
}
