/**
 * Three ways to speak: on a terminal, human lines and a live progress bar; when stdout is not a
 * terminal, the same lines without the bar (one per event, for scripts and logs); with --json, one
 * JSON object per line on stdout and nothing else there. Errors and notes go to stderr in every mode.
 */
export class Output {
  readonly json: boolean;
  /** Human output to a terminal: progress bars. */
  readonly tty: boolean;
  readonly stdout: NodeJS.WriteStream;
  private live: LiveLine | undefined;

  constructor(json: boolean, stdout: NodeJS.WriteStream = process.stdout) {
    this.json = json;
    this.tty = !json && stdout.isTTY === true;
    this.stdout = stdout;
  }

  /** A human line on stdout (not with --json). */
  line(text: string): void {
    if (this.json) return;
    this.live?.clear();
    this.stdout.write(`${text}\n`);
  }

  /** One JSON object on stdout (only with --json). */
  event(value: Record<string, unknown>): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A line on stderr, in every mode. */
  note(text: string): void {
    this.live?.clear();
    process.stderr.write(`${text}\n`);
  }

  /**
   * Lines printed while `live` is drawn erase it first (it draws itself again); `undefined` when it
   * stops, so that its last state stays on the screen.
   */
  setLive(live: LiveLine | undefined): void {
    this.live = live;
  }
}

/** Something drawn on the terminal's last line, such as a progress bar. */
export interface LiveLine {
  clear(): void;
}
