import {
  ConditionalCheckFailedException,
  TransactionCanceledException,
  TransactionConflictException,
} from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { rejectionOf, TransitionRejected, withConflictRetry } from '../../lib/jobs/jobs-table.ts';

/** The shared handling of lost conditions and conflicts that every jobs-table adapter relies on. */

const meta = { $metadata: {} };
const job = { jobId: 'J', username: 'u', status: 'CANCELLING', pk: 'USER#u', sk: 'JOB#J' };
const describeJob = (current: { status: string } | undefined) => `now ${current?.status ?? 'gone'}`;

describe('rejectionOf', () => {
  it('reads the job from a single write that lost its condition', () => {
    const error = new ConditionalCheckFailedException({ message: 'x', ...meta, Item: marshall(job) });
    const rejected = rejectionOf(error, describeJob)!;
    expect(rejected).toBeInstanceOf(TransitionRejected);
    expect(rejected.message).toBe('now CANCELLING');
    // Only the job's own fields, not the table's keys.
    expect(rejected.current).toEqual({ jobId: 'J', username: 'u', status: 'CANCELLING' });
  });

  it('reads the job from a transaction whose first item lost its condition', () => {
    const error = new TransactionCanceledException({
      message: 'x',
      ...meta,
      CancellationReasons: [{ Code: 'ConditionalCheckFailed', Item: marshall(job) }, { Code: 'None' }],
    });
    expect(rejectionOf(error, describeJob)?.current?.status).toBe('CANCELLING');
  });

  it('says gone when the job is not there, and is undefined for any other failure', () => {
    expect(
      rejectionOf(new ConditionalCheckFailedException({ message: 'x', ...meta }), describeJob)?.message,
    ).toBe('now gone');
    const otherItemLost = new TransactionCanceledException({
      message: 'x',
      ...meta,
      CancellationReasons: [{ Code: 'None' }, { Code: 'ConditionalCheckFailed' }],
    });
    expect(rejectionOf(otherItemLost, describeJob)).toBeUndefined();
    expect(rejectionOf(new Error('network'), describeJob)).toBeUndefined();
  });
});

describe('withConflictRetry', () => {
  const conflict = () => new TransactionConflictException({ message: 'busy', ...meta });
  const cancelledByConflict = () =>
    new TransactionCanceledException({
      message: 'x',
      ...meta,
      CancellationReasons: [{ Code: 'None' }, { Code: 'TransactionConflict' }],
    });

  it('retries single-write and transaction conflicts until the write goes through', async () => {
    const failures = [conflict(), cancelledByConflict(), conflict()];
    let calls = 0;
    const result = await withConflictRetry(async () => {
      calls++;
      const failure = failures.shift();
      if (failure) throw failure;
      return 'written';
    });
    expect(result).toBe('written');
    expect(calls).toBe(4);
  });

  it('never retries a lost condition, which decides the outcome', async () => {
    let calls = 0;
    const lost = new TransactionCanceledException({
      message: 'x',
      ...meta,
      CancellationReasons: [{ Code: 'ConditionalCheckFailed' }, { Code: 'TransactionConflict' }],
    });
    await expect(
      withConflictRetry(async () => {
        calls++;
        throw lost;
      }),
    ).rejects.toBe(lost);
    expect(calls).toBe(1);
  });
});
