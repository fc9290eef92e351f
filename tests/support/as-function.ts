/**
 * Runs in-process code as one of the test stack's functions for the IAM check (lib/aws/call-audit.ts,
 * tests/support/iam-audit.ts): its AWS calls are recorded as that function's, as they are when
 * serverless-offline runs it. For the code only tests run in-process (the janitor, the export worker
 * driven part by part, the worker's failure handler), which would otherwise go unchecked. Not for
 * two functions at once in one process: the name is process-wide while `work` runs.
 */
export async function asFunction<T>(functionKey: string, work: () => Promise<T>): Promise<T> {
  // `<service>-<stage>-exportWorker` (serverless.yml): the same prefix names every function.
  const worker = process.env.EXPORT_WORKER_FUNCTION ?? '';
  if (!worker.endsWith('-exportWorker')) return work();
  const previous = process.env.AWS_LAMBDA_FUNCTION_NAME;
  process.env.AWS_LAMBDA_FUNCTION_NAME = `${worker.slice(0, -'exportWorker'.length)}${functionKey}`;
  try {
    return await work();
  } finally {
    if (previous === undefined) delete process.env.AWS_LAMBDA_FUNCTION_NAME;
    else process.env.AWS_LAMBDA_FUNCTION_NAME = previous;
  }
}
