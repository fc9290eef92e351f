/**
 * Ctrl-C (SIGINT) and SIGTERM during a long operation: the first one aborts the operation's signal,
 * so that it can kill its job on the server and say so; a second one exits at once.
 */
export async function withInterrupts<T>(
  run: (signal: AbortSignal) => Promise<T>,
  onFirst: (signalName: NodeJS.Signals) => void,
): Promise<T> {
  const controller = new AbortController();
  const handler = (signalName: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      onFirst(signalName);
      controller.abort();
      return;
    }
    process.stderr.write('interrupted again: exiting without cleaning up\n');
    process.exit(130);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  try {
    return await run(controller.signal);
  } finally {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  }
}
