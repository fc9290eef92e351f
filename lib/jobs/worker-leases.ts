import { randomUUID } from 'node:crypto';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import {
  type JobRecord,
  jobSk,
  ownerStatus,
  rejectionOf,
  toJob,
  userPk,
  withConflictRetry,
} from './jobs-table.ts';

/**
 * Who runs an export: the worker holding the job's token, under a lease it renews with every step.
 * A worker whose lease ran out has lost the job; every write it makes is conditional on its token,
 * so it finds out at its next write and changes nothing.
 */
export class WorkerLeases {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.db = db;
    this.table = table;
  }

  /**
   * A worker takes a job: a QUEUED one, a RUNNING one handed to `token` by the previous invocation,
   * or a RUNNING one whose lease ran out (its worker died). Throws TransitionRejected otherwise,
   * which is how a duplicate delivery of the same event finds out it has nothing to do.
   */
  async claim(
    username: string,
    jobId: string,
    options: {
      token?: string | undefined;
      newToken: string;
      leaseSeconds: number;
      /** The Lambda invocation that takes it: Lambda reports that invocation by this id if it dies. */
      requestId?: string | undefined;
    },
  ): Promise<JobRecord> {
    const now = Math.floor(Date.now() / 1000);
    try {
      const { Attributes } = await withConflictRetry(() =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: userPk(username), sk: jobSk(jobId) },
            UpdateExpression: `SET #status = :running, ownerStatus = :ownerStatus, workerToken = :newToken, leaseUntil = :lease, updatedAt = :now${
              options.requestId ? ', workerRequestId = :requestId' : ''
            } ADD invocations :one${options.requestId ? '' : ' REMOVE workerRequestId'}`,
            ConditionExpression:
              '#status = :queued OR (#status = :running AND (workerToken = :token OR leaseUntil < :epoch))',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: {
              ':running': 'RUNNING',
              ':ownerStatus': ownerStatus(username, 'export', 'RUNNING'),
              ':queued': 'QUEUED',
              ':newToken': options.newToken,
              ':token': options.token ?? '-',
              ':lease': now + options.leaseSeconds,
              ':epoch': now,
              ':now': new Date().toISOString(),
              ':one': 1,
              ...(options.requestId ? { ':requestId': options.requestId } : {}),
            },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
      return toJob(Attributes!);
    } catch (error) {
      throw (
        rejectionOf(error, (current) =>
          current ? `job ${jobId} is ${current.status} and not handed to this worker` : `no job ${jobId}`,
        ) ?? error
      );
    }
  }

  /**
   * The worker's heartbeat after each part: progress, checkpoint and a fresh lease, only while the
   * job is RUNNING under `token`. A kill (CANCELLING) makes it fail: that is how the worker notices.
   * `set` may also record type-specific fields (the output upload id) and hand the job to a new token.
   */
  async heartbeat(
    username: string,
    jobId: string,
    token: string,
    update: {
      partsDone: number;
      bytesDone: number;
      checkpoint: { offset: number; partNumber: number };
      leaseSeconds: number;
      uploadId?: string;
      handOffTo?: string;
      /** The checkpoint moved on: the restarts in a row without progress start again from zero. */
      progressed?: boolean;
      /** The worker restarts itself (a hand-off after a failure): counted as the janitor counts its own. */
      restart?: boolean;
    },
  ): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const sets = [
      'partsDone = :partsDone',
      'bytesDone = :bytesDone',
      'checkpoint = :checkpoint',
      'leaseUntil = :lease',
      'updatedAt = :now',
    ];
    const values: Record<string, unknown> = {
      ':partsDone': update.partsDone,
      ':bytesDone': update.bytesDone,
      ':checkpoint': update.checkpoint,
      ':lease': now + update.leaseSeconds,
      ':now': new Date().toISOString(),
      ':running': 'RUNNING',
      ':token': token,
    };
    if (update.uploadId) {
      sets.push('uploadId = :uploadId');
      values[':uploadId'] = update.uploadId;
    }
    if (update.handOffTo) {
      sets.push('workerToken = :next');
      values[':next'] = update.handOffTo;
    }
    if (update.restart) values[':one'] = 1;
    const clauses = [
      `SET ${sets.join(', ')}`,
      update.progressed ? 'REMOVE restartsSinceProgress' : '',
      update.restart ? 'ADD restarts :one, restartsSinceProgress :one' : '',
    ];
    try {
      await withConflictRetry(() =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: userPk(username), sk: jobSk(jobId) },
            UpdateExpression: clauses.filter(Boolean).join(' '),
            ConditionExpression: '#status = :running AND workerToken = :token',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
    } catch (error) {
      throw rejectionOf(error, () => `job ${jobId} is no longer running under this worker`) ?? error;
    }
  }

  /**
   * Ends the lease of a worker that Lambda reported dead (its invocation `requestId` failed), if that
   * invocation still holds the job under the token read: the job is then free for a restart at once,
   * not when the lease would have run out. The token changes too, so that nothing of that invocation
   * can write again, however late. Answers the job as it now is, or undefined if it was not (or is
   * no longer) held by that invocation.
   */
  async revokeDead(job: JobRecord, requestId: string): Promise<JobRecord | undefined> {
    try {
      const { Attributes } = await withConflictRetry(() =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: userPk(job.username), sk: jobSk(job.jobId) },
            UpdateExpression: 'SET leaseUntil = :gone, workerToken = :revoked, updatedAt = :now',
            ConditionExpression:
              '#status IN (:running, :cancelling) AND workerRequestId = :requestId AND workerToken = :token',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: {
              ':running': 'RUNNING',
              ':cancelling': 'CANCELLING',
              ':gone': 0,
              ':revoked': randomUUID(),
              ':now': new Date().toISOString(),
              ':requestId': requestId,
              ':token': job.workerToken ?? '-',
            },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      );
      return toJob(Attributes!);
    } catch (error) {
      if (rejectionOf(error, () => 'held by another invocation')) return undefined;
      throw error;
    }
  }

  /**
   * Counts one restart of a job's worker, only if nobody counted it since `seen` was read: of two
   * janitors running at once, one restarts the worker.
   */
  async countRestart(job: JobRecord): Promise<boolean> {
    try {
      await withConflictRetry(() =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: userPk(job.username), sk: jobSk(job.jobId) },
            UpdateExpression: 'SET restarts = :next, restartsSinceProgress = :nextInARow, updatedAt = :now',
            ConditionExpression: '#status = :status AND (attribute_not_exists(restarts) OR restarts = :seen)',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: {
              ':next': (job.restarts ?? 0) + 1,
              ':seen': job.restarts ?? 0,
              ':nextInARow': (job.restartsSinceProgress ?? 0) + 1,
              ':status': job.status,
              ':now': new Date().toISOString(),
            },
          }),
        ),
      );
      return true;
    } catch (error) {
      if (rejectionOf(error, () => 'restart counted elsewhere')) return false;
      throw error;
    }
  }
}
