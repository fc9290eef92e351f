import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { jobStore, partRecords } from '../../lib/jobs/index.ts';
import { newJobId } from '../../lib/jobs/job-ids.ts';
import type { JobRecord, PartRecord } from '../../lib/jobs/jobs-table.ts';

/**
 * Recording an upload's parts costs O(parts / 100) DynamoDB calls, however many were recorded before:
 * a client that reports 1,000 parts again (a resume, a retried report) reads them in batches of 100
 * and writes only those that changed, in transactions of up to 99 parts and the job's counters.
 * The counters always equal the part items.
 */

const PARTS = 1000;

async function uploadJob(partCount = PARTS): Promise<JobRecord> {
  const now = new Date().toISOString();
  const username = `parts-${randomUUID().slice(0, 8)}`;
  const job: JobRecord = {
    jobId: newJobId(),
    username,
    type: 'upload',
    status: 'UPLOADING',
    filename: 'big.bin',
    key: `uploads/${username}/big.bin`,
    size: partCount * 5 * MiB,
    partSize: 5 * MiB,
    partCount,
    partsDone: 0,
    bytesDone: 0,
    createdAt: now,
    updatedAt: now,
  };
  await jobStore().create(job, job.filename);
  return job;
}

const parts = (count: number, etagOf: (n: number) => string, sizeOf = (_n: number) => 5 * MiB) =>
  Array.from({ length: count }, (_, index): PartRecord => {
    const partNumber = index + 1;
    return { partNumber, etag: etagOf(partNumber), size: sizeOf(partNumber) };
  });

/** The DynamoDB calls `run` makes, by command name. */
async function callsOf(run: () => Promise<unknown>): Promise<Record<string, number>> {
  const db = documentClient();
  const send = db.send.bind(db);
  const calls: Record<string, number> = {};
  const spy = jest.spyOn(db, 'send').mockImplementation((async (command: object) => {
    const name = command.constructor.name;
    calls[name] = (calls[name] ?? 0) + 1;
    return send(command as never);
  }) as never);
  try {
    await run();
  } finally {
    spy.mockRestore();
  }
  return calls;
}

/** The job's counters and what its part items add up to: always equal. */
async function tally(job: JobRecord) {
  const current = (await jobStore().get(job.username, job.jobId))!;
  const items = await partRecords().list(job.jobId);
  return {
    counters: { partsDone: Number(current.partsDone), bytesDone: Number(current.bytesDone) },
    items: { partsDone: items.length, bytesDone: items.reduce((sum, part) => sum + part.size, 0) },
    etags: new Map(items.map((part) => [part.partNumber, part.etag])),
  };
}

describe('recording many parts', () => {
  it('records 1,000 parts, then the same 1,000 again and with changed ETags, in O(parts / 100) calls', async () => {
    const job = await uploadJob();
    const record = (list: PartRecord[]) => partRecords().record(job.username, job.jobId, list, 'UPLOADING');

    const first = parts(PARTS, (n) => `"first-${n}"`);
    // 10 batch reads of 100 keys, 11 transactions of up to 99 parts.
    expect(await callsOf(() => record(first))).toEqual({ BatchGetCommand: 10, TransactWriteCommand: 11 });
    let now = await tally(job);
    expect(now.counters).toEqual({ partsDone: PARTS, bytesDone: PARTS * 5 * MiB });
    expect(now.items).toEqual(now.counters);

    // Reported again as they are: read, found identical, nothing written.
    expect(await callsOf(() => record(first))).toEqual({ BatchGetCommand: 10 });
    expect((await tally(job)).counters).toEqual({ partsDone: PARTS, bytesDone: PARTS * 5 * MiB });

    // 300 parts sent again (new ETags), one of them with another size; the other 700 as they were.
    const changed = (n: number) => n % 10 < 3;
    const again = parts(
      PARTS,
      (n) => (changed(n) ? `"again-${n}"` : `"first-${n}"`),
      (n) => (n === 3 ? 4 * MiB : 5 * MiB),
    );
    expect(await callsOf(() => record(again))).toEqual({ BatchGetCommand: 10, TransactWriteCommand: 4 });
    now = await tally(job);
    expect(now.counters).toEqual({ partsDone: PARTS, bytesDone: PARTS * 5 * MiB - MiB });
    expect(now.items).toEqual(now.counters);
    expect([...now.etags.values()].filter((etag) => etag.startsWith('"again-'))).toHaveLength(300);
    expect(now.etags.get(1)).toBe('"again-1"');
    expect(now.etags.get(5)).toBe('"first-5"');
  });

  it('mixes new, known and changed parts in one report, and concurrent reports of the same parts converge', async () => {
    const job = await uploadJob(400);
    const record = (list: PartRecord[]) => partRecords().record(job.username, job.jobId, list, 'UPLOADING');
    await record(parts(150, (n) => `"a-${n}"`));

    // Parts 1-150 known (1-50 changed), 151-300 new: two reports at once, each with its own ETags.
    const report = (tag: string) => parts(300, (n) => (n <= 50 || n > 150 ? `"${tag}-${n}"` : `"a-${n}"`));
    await Promise.all([record(report('b')), record(report('c'))]);

    const now = await tally(job);
    expect(now.counters).toEqual({ partsDone: 300, bytesDone: 300 * 5 * MiB });
    expect(now.items).toEqual(now.counters);
    // Each part carries one of the two reports' ETags (whichever wrote it last).
    for (const n of [1, 50, 151, 300]) expect(now.etags.get(n)).toMatch(new RegExp(`^"[bc]-${n}"$`));
    expect(now.etags.get(100)).toBe('"a-100"');
  });

  it('refuses to record parts of a job that is no longer UPLOADING, writing nothing', async () => {
    const job = await uploadJob(200);
    await jobStore().transition(job.username, job.jobId, {
      from: ['UPLOADING'],
      to: 'ABORTED',
      slot: { jobId: job.jobId, type: 'upload', name: job.filename },
    });
    await expect(
      partRecords().record(
        job.username,
        job.jobId,
        parts(200, (n) => `"x-${n}"`),
        'UPLOADING',
      ),
    ).rejects.toMatchObject({ name: 'TransitionRejected' });
    expect(await partRecords().list(job.jobId)).toEqual([]);
  });
});
