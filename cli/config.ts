import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { CliError } from './errors.ts';

/**
 * What the CLI keeps between runs, in `${XDG_CONFIG_HOME:-~/.config}/file-jobs/`:
 * - `config.json` (mode 0600): one session (token) per API URL;
 * - `uploads.json` (mode 0600): which local file each unfinished upload job was started from (size
 *   and modification time), so that a resume never mixes parts of two versions of a file.
 */

export const DEFAULT_API_URL = 'http://127.0.0.1:3000';

export interface Session {
  username: string;
  token: string;
  /** ISO time. */
  expiresAt: string;
}

export interface ConfigFile {
  /** Keyed by API URL. */
  sessions: Record<string, Session>;
}

export interface UploadRecord {
  apiUrl: string;
  jobId: string;
  /** Absolute path of the local file. */
  path: string;
  filename: string;
  size: number;
  mtimeMs: number;
  startedAt: string;
}

export interface UploadRecords {
  /** Keyed by job id. */
  uploads: Record<string, UploadRecord>;
}

type Env = Record<string, string | undefined>;

/** XDG base directory rules: a relative or empty XDG_CONFIG_HOME is ignored. */
export function configDir(env: Env = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.config');
  return join(base, 'file-jobs');
}

export const configFile = (env: Env = process.env) => join(configDir(env), 'config.json');
export const uploadsFile = (env: Env = process.env) => join(configDir(env), 'uploads.json');

function readJson<T>(path: string, empty: T): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return empty;
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return { ...empty, ...(JSON.parse(text) as T) };
  } catch {
    throw new CliError(`${path} is not valid JSON; delete it (and log in again)`);
  }
}

/**
 * Writes `value` as JSON readable by the owner only: the directory 0700, the file 0600, written to a
 * temporary file first and renamed over, so a crash never leaves half a file.
 */
export function writePrivateJson(path: string, value: unknown): void {
  const dir = join(path, '..');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    // The mode given to open() is reduced by the umask, never widened: make it exactly 0600.
    chmodSync(temp, 0o600);
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw new CliError(`cannot write ${path}: ${(error as Error).message}`);
  }
}

export const readConfig = (env: Env = process.env): ConfigFile =>
  readJson<ConfigFile>(configFile(env), { sessions: {} });

export function saveSession(apiUrl: string, session: Session, env: Env = process.env): string {
  const config = readConfig(env);
  config.sessions = { ...config.sessions, [apiUrl]: session };
  writePrivateJson(configFile(env), config);
  return configFile(env);
}

/** Forgets the session for `apiUrl`; true when there was one. */
export function removeSession(apiUrl: string, env: Env = process.env): boolean {
  const config = readConfig(env);
  if (!config.sessions[apiUrl]) return false;
  delete config.sessions[apiUrl];
  writePrivateJson(configFile(env), config);
  return true;
}

export interface ApiChoice {
  url: string;
  /** Where the URL came from, for error messages. */
  source: string;
}

/** `--api`, then FILE_JOBS_API_URL, then `.local/stack.json` in `cwd` (written by `npm start`), then the default. */
export function resolveApiUrl(
  flag: string | undefined,
  env: Env = process.env,
  cwd = process.cwd(),
): ApiChoice {
  const normalize = (url: string) => url.trim().replace(/\/+$/, '');
  if (flag) return { url: normalize(flag), source: '--api' };
  if (env.FILE_JOBS_API_URL) return { url: normalize(env.FILE_JOBS_API_URL), source: 'FILE_JOBS_API_URL' };
  const stackFile = join(cwd, '.local', 'stack.json');
  let text: string | undefined;
  try {
    text = readFileSync(stackFile, 'utf8');
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    try {
      const apiUrl = (JSON.parse(text) as { apiUrl?: unknown }).apiUrl;
      if (typeof apiUrl === 'string' && apiUrl)
        return { url: normalize(apiUrl), source: '.local/stack.json' };
    } catch {
      throw new CliError(`${stackFile} is not valid JSON; pass --api or set FILE_JOBS_API_URL`);
    }
  }
  return { url: DEFAULT_API_URL, source: 'the default' };
}

/** FILE_JOBS_TOKEN, else the stored session for `apiUrl`. */
export function resolveToken(apiUrl: string, env: Env = process.env): string {
  if (env.FILE_JOBS_TOKEN) return env.FILE_JOBS_TOKEN.trim();
  const session = readConfig(env).sessions[apiUrl];
  if (!session?.token) {
    throw new CliError(`not signed in to ${apiUrl}: run "file-jobs login" (or set FILE_JOBS_TOKEN)`);
  }
  return session.token;
}

export const readUploads = (env: Env = process.env): UploadRecords =>
  readJson<UploadRecords>(uploadsFile(env), { uploads: {} });

/** Records which file an upload job reads, keeping the file small: records older than 30 days go. */
export function rememberUpload(record: UploadRecord, env: Env = process.env): void {
  const records = readUploads(env);
  const cutoff = Date.now() - 30 * 24 * 3600 * 1000;
  const kept = Object.fromEntries(
    Object.entries(records.uploads).filter(([, old]) => Date.parse(old.startedAt) > cutoff),
  );
  writePrivateJson(uploadsFile(env), { uploads: { ...kept, [record.jobId]: record } });
}

export function forgetUploads(jobIds: string[], env: Env = process.env): void {
  const records = readUploads(env);
  if (!jobIds.some((jobId) => records.uploads[jobId])) return;
  for (const jobId of jobIds) delete records.uploads[jobId];
  writePrivateJson(uploadsFile(env), records);
}
