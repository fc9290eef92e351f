import { Writable } from 'node:stream';
import { jest } from '@jest/globals';
import { CliError, EXIT_INTERRUPTED, Interrupted } from '../../cli/errors.ts';
import { longRunning } from '../../cli/long-running.ts';
import { Output } from '../../cli/output.ts';
import { AbortedError } from '../../client/index.ts';

/** What the bar erases itself with before a line is printed over it. */
const ERASE = '\r\u001b[2K';

/** A stdout that keeps what is written; a terminal or not. */
function fakeStdout(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  Object.assign(stream, { isTTY, columns: 120 });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

let stderr: string[];
beforeEach(() => {
  stderr = [];
  jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr.push(String(chunk));
    return true;
  });
});
afterEach(() => jest.restoreAllMocks());

/** The SIGINT handler the run under test added, as the process would call it on Ctrl-C. */
function ctrlC(before: NodeJS.SignalsListener[]): () => void {
  const added = process.listeners('SIGINT').filter((listener) => !before.includes(listener));
  expect(added).toHaveLength(1);
  return () => added[0]!('SIGINT');
}

const how = { label: 'upload  ', interruptNote: 'interrupted: aborting the upload' };

describe('longRunning: the progress bar', () => {
  it('draws one bar on a terminal, erases it for lines printed over it, and leaves it drawn at the end', async () => {
    const stdout = fakeStdout(true);
    const out = new Output(false, stdout.stream);
    const result = await longRunning(out, how, async (run) => {
      run.showBar(100 * 1024, 10 * 1024);
      run.showBar(999); // a second call does not start another bar
      run.updateBar(50 * 1024, 100 * 1024, 2048, 25);
      out.line('part 1 sent');
      return 42;
    });
    expect(result).toBe(42);
    const text = stdout.text();
    expect(text).toContain('upload  ');
    expect(text).toContain('50% | 50.0 KiB of 100.0 KiB | 2.0 KiB/s | ETA 25 s');
    expect(text).not.toContain('999');
    expect(text).toContain(`${ERASE}part 1 sent\n`);
    // Stopped: a line printed after the command no longer erases anything.
    const length = text.length;
    out.line('after');
    expect(stdout.text().slice(length)).toBe('after\n');
  });

  it('draws no bar when stdout is not a terminal, nor with --json', async () => {
    for (const [json, tty] of [
      [false, false],
      [true, true],
    ] as const) {
      const stdout = fakeStdout(tty);
      const out = new Output(json, stdout.stream);
      await longRunning(out, how, async (run) => {
        run.showBar(100);
        run.updateBar(50, 100, undefined, undefined);
        out.line('line');
      });
      expect(stdout.text()).toBe(json ? '' : 'line\n');
    }
  });
});

describe('longRunning: Ctrl-C', () => {
  it('stops the bar, says what becomes of the job, aborts the signal, and ends with exit code 130', async () => {
    const stdout = fakeStdout(true);
    const out = new Output(false, stdout.stream);
    const before = process.listeners('SIGINT');
    const beforeTerm = process.listenerCount('SIGTERM');
    const run = longRunning(out, how, async (run) => {
      run.showBar(100);
      ctrlC(before)();
      expect(run.signal.aborted).toBe(true);
      expect(stderr).toEqual([`${how.interruptNote}\n`]);
      // The bar was stopped before the note: nothing erases or redraws it any more.
      const length = stdout.text().length;
      run.updateBar(60, 100, undefined, undefined);
      out.note('more');
      expect(stdout.text().length).toBe(length);
      throw new AbortedError('upload interrupted; job j1 aborted', { jobId: 'j1', outcome: 'killed' });
    });
    const error = await run.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Interrupted);
    expect((error as CliError).exitCode).toBe(EXIT_INTERRUPTED);
    expect((error as CliError).message).toBe('upload interrupted; job j1 aborted');
    expect(process.listeners('SIGINT')).toEqual(before);
    expect(process.listenerCount('SIGTERM')).toBe(beforeTerm);
  });

  it('reports the interruption as a JSON event, in the words the command gives it', async () => {
    const stdout = fakeStdout(false);
    const out = new Output(true, stdout.stream);
    const error = await longRunning(
      out,
      {
        ...how,
        interrupted: (aborted) =>
          new AbortedError(`${aborted.message} by running the same command again`, {
            jobId: aborted.jobId,
            outcome: aborted.outcome,
          }),
      },
      async () => {
        throw new AbortedError('kept on the server, to resume', { jobId: 'j2', outcome: 'kept' });
      },
    ).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe('kept on the server, to resume by running the same command again');
    expect(JSON.parse(stdout.text())).toEqual({ event: 'interrupted', jobId: 'j2', outcome: 'kept' });
  });

  it('a kill that failed is an error (exit code 130, printed with "error: "), not an interruption', async () => {
    const out = new Output(true, fakeStdout(false).stream);
    const error = await longRunning(out, how, async () => {
      throw new AbortedError('could not abort job j3', { jobId: 'j3', outcome: 'kill-failed' });
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CliError);
    expect(error).not.toBeInstanceOf(Interrupted);
    expect((error as CliError).exitCode).toBe(EXIT_INTERRUPTED);
  });

  it('a second Ctrl-C exits at once', async () => {
    const exit = jest.spyOn(process, 'exit').mockImplementation(() => undefined as never);
    const before = process.listeners('SIGINT');
    await longRunning(new Output(false, fakeStdout(false).stream), how, async () => {
      const press = ctrlC(before);
      press();
      expect(exit).not.toHaveBeenCalled();
      press();
    });
    expect(exit).toHaveBeenCalledWith(EXIT_INTERRUPTED);
    expect(stderr.at(-1)).toBe('interrupted again: exiting without cleaning up\n');
  });
});

describe('longRunning: other failures', () => {
  it("go through the command's own wording, or as they are, and leave no signal handler behind", async () => {
    const before = process.listeners('SIGINT');
    const out = new Output(false, fakeStdout(false).stream);
    const failure = new Error('S3 said no');
    await expect(
      longRunning(out, how, async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    const error = await longRunning(
      out,
      { ...how, failed: (caught) => new CliError(`${(caught as Error).message} (job j4 stays)`, 4) },
      async () => {
        throw failure;
      },
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).message).toBe('S3 said no (job j4 stays)');
    expect((error as CliError).exitCode).toBe(4);
    expect(process.listeners('SIGINT')).toEqual(before);
  });
});
