import { auditedFunction } from '../../lib/aws/call-audit.ts';

/**
 * Runs in-process code as one of the test stack's functions for the IAM check (lib/aws/call-audit.ts,
 * tests/support/iam-audit.ts): its AWS calls are recorded as that function's, as they are when
 * serverless-offline runs it. For the code only tests run in-process (the janitor, the export worker
 * driven part by part, the worker's failure handler), which would otherwise go unchecked. The name
 * holds for `work`'s own async context, so a janitor run during a worker run is still the janitor's.
 */
export function asFunction<T>(functionKey: string, work: () => Promise<T>): Promise<T> {
  // `<service>-<stage>-exportWorker` (serverless.yml): the same prefix names every function.
  const worker = process.env.EXPORT_WORKER_FUNCTION ?? '';
  if (!worker.endsWith('-exportWorker')) return work();
  return auditedFunction.run(`${worker.slice(0, -'exportWorker'.length)}${functionKey}`, work);
}
