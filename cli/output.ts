import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, formatRate } from './format.ts';

/**
 * Three ways to speak: on a terminal, human lines and a live progress bar; when stdout is not a
 * terminal, the same lines without the bar (one per event, for scripts and logs); with --json, one
 * JSON object per line on stdout and nothing else there. Errors and notes go to stderr in every mode.
 */
export class Output {
  readonly json: boolean;
  /** Human output to a terminal: progress bars. */
  readonly tty: boolean;
  private activeBar: ProgressBar | undefined;

  constructor(json: boolean, stdout: NodeJS.WriteStream = process.stdout) {
    this.json = json;
    this.tty = !json && stdout.isTTY === true;
  }

  /** A human line on stdout (not with --json). */
  line(text: string): void {
    if (this.json) return;
    this.activeBar?.clear();
    process.stdout.write(`${text}\n`);
  }

  /** One JSON object on stdout (only with --json). */
  event(value: Record<string, unknown>): void {
    if (this.json) process.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A line on stderr, in every mode. */
  note(text: string): void {
    this.activeBar?.clear();
    process.stderr.write(`${text}\n`);
  }

  /** A live bar of bytes (terminal only; undefined otherwise). */
  bar(label: string, total: number, start = 0): ProgressBar | undefined {
    if (!this.tty) return undefined;
    this.activeBar = new ProgressBar(label, total, start, () => {
      this.activeBar = undefined;
    });
    return this.activeBar;
  }

  /** Stops any bar (before an interruption message). */
  stopBar(): void {
    this.activeBar?.stop();
  }
}

export class ProgressBar {
  private readonly bar: cliProgress.SingleBar;
  private stopped = false;
  private readonly onStop: () => void;

  constructor(label: string, total: number, start: number, onStop: () => void) {
    this.onStop = onStop;
    this.bar = new cliProgress.SingleBar({
      format: `${label} {bar} {percentage}% | {doneText} of {totalText} | {speed} | ETA {etaText}`,
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      stream: process.stdout,
    });
    this.bar.start(total, start, this.payload(start, total, undefined, undefined));
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
    if (!this.stopped) process.stdout.write('\r\u001b[2K');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar.stop();
    this.onStop();
  }
}
