import { documentClient } from '../aws/clients.ts';
import { config } from '../config.ts';
import { JobStore } from './job-store.ts';

let store: JobStore | undefined;

/** The jobs table adapter, one per container. */
export function jobStore(): JobStore {
  store ??= new JobStore(documentClient(), config().jobsTable, config().jobRetentionSeconds);
  return store;
}
