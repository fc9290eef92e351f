import { jest } from '@jest/globals';
import type { WorkerEvent } from '../../lib/exports/exports.ts';
import { type JanitorSettings, janitorSettings, runJanitor } from '../../lib/janitor/janitor.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { asFunction } from './as-function.ts';

// Apart from ./exports.ts, which the benches import too (bench/export-worker.ts), outside Jest.

/**
 * The janitor, limited to one user's jobs and to no bucket prefix, with the workers it starts handed
 * to the test (which runs them in-process) instead of invoked.
 */
export async function janitorFor(username: string, overrides: Partial<JanitorSettings> = {}) {
  const store = jobStore();
  const allActive = store.allActive.bind(store);
  const spy = jest
    .spyOn(store, 'allActive')
    .mockImplementation(async () => (await allActive()).filter((job) => job.username === username));
  const started: WorkerEvent[] = [];
  try {
    const report = await asFunction('janitor', () =>
      runJanitor({ ...janitorSettings(), prefixes: [], ...overrides }, Date.now(), async (event) => {
        started.push(event);
      }),
    );
    return { report, started };
  } finally {
    spy.mockRestore();
  }
}
