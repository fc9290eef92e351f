import { createInterface, type Interface } from 'node:readline';
import { CliError, EXIT_INTERRUPTED } from './errors.ts';

/** Lines of standard input when it is not a terminal (`echo pw | file-jobs login alice`), read on demand. */
let lines: AsyncIterator<string> | undefined;
let reader: Interface | undefined;

export async function readStdinLine(what: string): Promise<string> {
  if (!lines) {
    reader = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY, terminal: false });
    lines = reader[Symbol.asyncIterator]();
  }
  const next = await lines.next();
  if (next.done) throw new CliError(`no ${what} on standard input`);
  return next.value;
}

/** Lets the process end once the lines it needed are read. */
export function closeStdin(): void {
  reader?.close();
  process.stdin.destroy();
}

/** Asks on stderr (stdout stays for results) and reads a line from the terminal. */
export function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  return new Promise((resolve, reject) => {
    rl.once('SIGINT', () => {
      rl.close();
      process.stderr.write('\n');
      reject(new CliError('interrupted', EXIT_INTERRUPTED));
    });
    rl.question(question, (answer) => {
      rl.close();
      resolve(answer);
    });
  });
}

/** Asks for a secret without echoing it: the terminal in raw mode, Backspace and Ctrl-C handled. */
export function askHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n' || char === '\u0004') {
          finish();
          resolve(value);
          return;
        }
        if (char === '\u0003') {
          finish();
          reject(new CliError('interrupted', EXIT_INTERRUPTED));
          return;
        }
        if (char === '\u007f' || char === '\b') {
          value = Array.from(value).slice(0, -1).join('');
        } else if (char >= ' ') {
          value += char;
        }
      }
    };
    stdin.on('data', onData);
  });
}
