import cliProgress from 'cli-progress';
import { AbortedError } from '../client/index.ts';
import { CliError, EXIT_INTERRUPTED, Interrupted } from './errors.ts';
import { formatBytes, formatDuration, formatRate } from './format.ts';
import type { LiveLine, Output } from './output.ts';

/**
 * What every long command (upload, export, download) shares: a progress bar of bytes on a terminal,
 * and Ctrl-C (SIGINT) or SIGTERM handling. The first signal stops the bar, says what happens to the
 * job and aborts the operation's signal, so that the client can kill its job on the server and say
 * so; a second one exits at once. The command's file then holds its flow and nothing else.
 */
export interface Run {
  /** Aborted by the first Ctrl-C. */
  readonly signal: AbortSignal;
  /** Shows the bar at `done` of `total` bytes: on a terminal only, and once (later calls do nothing). */
  showBar(total: number, done?: number): void;
  /** Moves the bar, once shown. */
  updateBar(
    done: number,
    total: number,
    bytesPerSecond: number | undefined,
    etaSeconds: number | undefined,
  ): void;
}

export interface LongRunning {
  /** The bar's label, 8 characters, so that the bars of one command line up. */
  label: string;
  /** Said on stderr at the first Ctrl-C: what becomes of the job. */
  interruptNote: string;
  /** The interruption as this command reports it (by default, as the client worded it). */
  interrupted?: (error: AbortedError) => AbortedError;
  /** Any other failure as this command reports it (by default, as it is). */
  failed?: (error: unknown) => unknown;
}

export async function longRunning<T>(
  out: Output,
  how: LongRunning,
  run: (run: Run) => Promise<T>,
): Promise<T> {
  let bar: ProgressBar | undefined;
  try {
    return await withInterrupts(
      (signal) =>
        run({
          signal,
          showBar: (total, done = 0) => {
            if (out.tty) bar ??= new ProgressBar(out, how.label, total, done);
          },
          updateBar: (done, total, bytesPerSecond, etaSeconds) =>
            bar?.update(done, total, bytesPerSecond, etaSeconds),
        }),
      () => {
        bar?.stop();
        out.note(how.interruptNote);
      },
    );
  } catch (error) {
    // Before anything is said about the failure, so that the bar's last state stays above it.
    bar?.stop();
    if (error instanceof AbortedError) throw interruption(out, how.interrupted?.(error) ?? error);
    throw how.failed ? how.failed(error) : error;
  } finally {
    bar?.stop();
  }
}

/** An interruption, reported on stderr (and as a JSON event) with exit code 130. */
function interruption(out: Output, error: AbortedError): CliError {
  out.event({ event: 'interrupted', jobId: error.jobId ?? null, outcome: error.outcome });
  // A kill that failed leaves a job behind: that is an error.
  if (error.outcome === 'kill-failed') return new CliError(error.message, EXIT_INTERRUPTED);
  return new Interrupted(error.message);
}

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
    process.exit(EXIT_INTERRUPTED);
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

export class ProgressBar implements LiveLine {
  private readonly bar: cliProgress.SingleBar;
  private readonly out: Output;
  private stopped = false;

  constructor(out: Output, label: string, total: number, start: number) {
    this.out = out;
    this.bar = new cliProgress.SingleBar({
      format: `${label} {bar} {percentage}% | {doneText} of {totalText} | {speed} | ETA {etaText}`,
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      stream: out.stdout,
    });
    this.bar.start(total, start, this.payload(start, total, undefined, undefined));
    out.setLive(this);
  }

  private payload(done: number, total: number, bytesPerSecond: number | undefined, eta: number | undefined) {
    return {
      doneText: formatBytes(done),
      totalText: formatBytes(total),
      speed: formatRate(bytesPerSecond),
      etaText: formatDuration(eta),
    };
  }

  update(
    done: number,
    total: number,
    bytesPerSecond: number | undefined,
    etaSeconds: number | undefined,
  ): void {
    if (this.stopped) return;
    if (this.bar.getTotal() !== total) this.bar.setTotal(total);
    this.bar.update(done, this.payload(done, total, bytesPerSecond, etaSeconds));
  }

  /** Erases the bar's line so that a message can be printed; it is drawn again on the next update. */
  clear(): void {
    if (!this.stopped) this.out.stdout.write('\r\u001b[2K');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar.stop();
    this.out.setLive(undefined);
  }
}
