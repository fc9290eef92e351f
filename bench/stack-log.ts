/**
 * What a bench keeps of its local stack's log: the last lines, printed when something fails, and
 * every line as it comes with --verbose.
 */
export function stackLog(verbose: boolean, keep = 40) {
  const tail: string[] = [];
  return {
    tail,
    remember: (line: string) => {
      if (verbose) process.stderr.write(`  | ${line}\n`);
      tail.push(line);
      if (tail.length > keep) tail.shift();
    },
  };
}
