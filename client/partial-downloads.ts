import { randomBytes } from 'node:crypto';
import { readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * The bytes of a download that stopped before its end, kept beside its target so that the next
 * download of the same export to the same path goes on from them: a process killed mid-way (Ctrl-C,
 * SIGKILL, a crash, a reboot) loses nothing it had already fetched.
 *
 * A partial file is named `.<target name>.<jobId>.<pid>-<random>.part`. The pid tells a download
 * still running (its process alive) from one whose process is gone: only the latter's file is taken
 * over, by renaming it to the new download's own name, which only one of several downloads started
 * at once can do. An export's output never changes once it has SUCCEEDED, so bytes kept under its job
 * id are its bytes (and the download's checksum check, when the job has one, stands behind that).
 */

const PARTIAL = /^\.(.+)\.([0-9A-Za-z]+)\.(\d+)-[0-9a-f]+\.part$/;

/** Whether a process with this id runs on this machine (one we may not signal runs too). */
function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface PartialDownload {
  /** The file to write: a partial one taken over, or a new name. */
  path: string;
  /** Bytes it already holds, from the start of the output. */
  bytes: number;
}

/**
 * The file a download of export `jobId` to `target` writes: the largest partial file a stopped
 * download of it left there, taken over, or else a new one. Other partial files of stopped downloads
 * of it are deleted (they hold fewer bytes).
 */
export async function claimPartialDownload(target: string, jobId: string): Promise<PartialDownload> {
  const dir = dirname(target);
  const name = basename(target);
  const path = join(dir, `.${name}.${jobId}.${process.pid}-${randomBytes(4).toString('hex')}.part`);
  const names = await readdir(dir).catch(() => [] as string[]);
  const stopped: { path: string; bytes: number }[] = [];
  for (const entry of names) {
    const match = PARTIAL.exec(entry);
    if (!match || match[1] !== name || match[2] !== jobId || isAlive(Number(match[3]))) continue;
    const bytes = (await stat(join(dir, entry)).catch(() => undefined))?.size;
    if (bytes !== undefined) stopped.push({ path: join(dir, entry), bytes });
  }
  stopped.sort((a, b) => b.bytes - a.bytes);
  let claimed: PartialDownload | undefined;
  for (const candidate of stopped) {
    if (claimed) {
      await unlink(candidate.path).catch(() => {});
      continue;
    }
    // Another download started at the same moment may take it first: then try the next one.
    if (
      await rename(candidate.path, path).then(
        () => true,
        () => false,
      )
    ) {
      claimed = { path, bytes: (await stat(path)).size };
    }
  }
  return claimed ?? { path, bytes: 0 };
}
