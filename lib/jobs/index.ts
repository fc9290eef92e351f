import { documentClient } from '../aws/clients.ts';
import { config } from '../config.ts';
import { JobStore } from './job-store.ts';
import { PartRecords } from './part-records.ts';
import { WorkerLeases } from './worker-leases.ts';

let store: JobStore | undefined;
let parts: PartRecords | undefined;
let leases: WorkerLeases | undefined;

/** The jobs table's adapters, one of each per container. */
export function jobStore(): JobStore {
  store ??= new JobStore(documentClient(), config().jobsTable, config().jobRetentionSeconds);
  return store;
}

export function partRecords(): PartRecords {
  parts ??= new PartRecords(documentClient(), config().jobsTable, config().jobRetentionSeconds);
  return parts;
}

export function workerLeases(): WorkerLeases {
  leases ??= new WorkerLeases(documentClient(), config().jobsTable);
  return leases;
}
