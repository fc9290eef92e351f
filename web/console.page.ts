/**
 * The web console served at GET / (README, "The web console"): sign in and out, Uppy's Dashboard
 * uploading through the service's Companion routes, the jobs with live progress, the kill routes,
 * exports and the files. Plain DOM, no UI library: Uppy's Dashboard (Preact inside) is the only
 * widget. scripts/console/build.ts bundles it into the one HTML page the console function returns.
 *
 * The page talks to the API on its own origin with the session cookie (HttpOnly: this script never
 * sees the token) and sends the readable CSRF cookie back as X-CSRF-Token on every request that
 * changes something, Uppy's included (it calls the global fetch with no way to add headers).
 */
import Uppy, { type UppyFile } from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import GoldenRetriever from '@uppy/golden-retriever';
import { IDEMPOTENCY_KEY_METADATA_FIELD } from '../common/idempotency.ts';
import { type JobStatus, TERMINAL_STATUSES } from '../common/statuses.ts';
import ParallelMultipart, { type MultipartState } from './parallel-multipart.ts';
import { CONSOLE_CHECKSUM_ALGORITHM } from './part-checksums.ts';
import { consoleChunkSize, type ListedPart, matchParts } from './part-match.ts';

const API = window.location.origin;
const POLL_MS = 1500;

interface Job {
  jobId: string;
  type: 'upload' | 'export';
  status: JobStatus;
  filename: string;
  /** An upload's declared size (0 for one from Uppy that did not say it). */
  size: number;
  format?: string;
  /** The checksum an upload's parts and completion carry, when it was created with one. */
  checksumAlgorithm?: string;
  progress: { partsDone: number; partCount: number; bytesDone: number; bytesTotal: number };
  createdAt: string;
  downloadUrl?: string;
  error?: string;
}

interface FileEntry {
  name: string;
  size: number;
  lastModified: string;
}

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

function csrfToken(): string {
  for (const pair of document.cookie.split(';')) {
    const [name, ...value] = pair.trim().split('=');
    if (name === 'fj_csrf' || name === '__Host-fj_csrf') return value.join('=');
  }
  return '';
}

/**
 * Why the service refused Uppy's last create of each file name (409), by name: Uppy keeps only the
 * status text of a Companion answer, and the refusal names what holds the name.
 */
const createRefusals = new Map<string, CreateRefusal>();

interface CreateRefusal {
  code?: string;
  /** 409 UploadInProgress: the upload job holding the name, and its S3 key. */
  jobId?: string;
  key?: string;
}

/** The file name of Uppy's create request (its JSON body), if it is one. */
function createdName(body: BodyInit | null | undefined): string | undefined {
  try {
    const filename = (JSON.parse(String(body)) as { filename?: unknown }).filename;
    return typeof filename === 'string' ? filename : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the service's 409 for this name; any other outcome (an answer, no answer) forgets it. */
async function rememberCreateRefusal(filename: string, answer: Response | undefined) {
  createRefusals.delete(filename);
  if (answer?.status !== 409) return;
  const error = (
    (await answer
      .clone()
      .json()
      .catch(() => undefined)) as { error?: { code?: string; details?: CreateRefusal } } | undefined
  )?.error;
  createRefusals.set(filename, { code: error?.code, jobId: error?.details?.jobId, key: error?.details?.key });
}

/**
 * Uploads whose resume found nothing: Uppy asked for the parts of an upload restored from an earlier
 * page (Golden Retriever) and the service answered 404, because that job has ended since (expired,
 * killed from elsewhere). Such a file is sent again from the start.
 */
const endedUploads = new Set<string>();

/** The upload id of Uppy's part-list request (GET /s3/multipart/{uploadId}?key=), if it is one. */
const listedUpload = (url: URL) => /^\/s3\/multipart\/([^/]+)$/.exec(url.pathname)?.[1];

// Every same-origin request that changes something carries the CSRF token: the page's own calls and
// Uppy's (which uses the global fetch and cannot be given headers).
const plainFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(input instanceof Request ? input.url : String(input), window.location.href);
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const listed = url.origin === API && method === 'GET' ? listedUpload(url) : undefined;
  if (listed !== undefined) {
    const answer = await plainFetch(input, init);
    if (answer.status === 404) endedUploads.add(decodeURIComponent(listed));
    return answer;
  }
  if (url.origin !== API || method === 'GET' || method === 'HEAD') return plainFetch(input, init);
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  headers.set('x-csrf-token', csrfToken());
  const created = method === 'POST' && url.pathname === '/s3/multipart' ? createdName(init?.body) : undefined;
  if (created === undefined) return plainFetch(input, { ...init, headers });
  try {
    const answer = await plainFetch(input, { ...init, headers });
    await rememberCreateRefusal(created, answer);
    return answer;
  } catch (error) {
    await rememberCreateRefusal(created, undefined);
    throw error;
  }
};

class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The answer, or undefined when the service answered 404 (gone, or never there). */
const unlessNotFound = <T>(answer: Promise<T>): Promise<T | undefined> =>
  answer.catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 404) return undefined;
    throw error;
  });

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${API}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : undefined;
  if (!response.ok) {
    if (response.status === 401 && path !== '/auth/session')
      signedOut('your session has ended; sign in again');
    throw new ApiError(
      response.status,
      parsed?.error?.message ?? `${response.status} ${response.statusText}`,
    );
  }
  return parsed as T;
}

// ---- notices ---------------------------------------------------------------------------------

/** Says something at the top of the page, with buttons for what the person may do about it. */
function notify(message: string, isError = false, actions: HTMLButtonElement[] = []) {
  const notice = $('#notice');
  notice.textContent = message;
  if (actions.length > 0) notice.append(' ', ...actions);
  notice.className = isError ? 'notice error' : 'notice';
}

const failed = (error: unknown) => notify(error instanceof Error ? error.message : String(error), true);

// ---- formatting ------------------------------------------------------------------------------

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function button(label: string, onClick: () => Promise<unknown>, accessibleName = label) {
  const node = element('button', { type: 'button', textContent: label });
  if (accessibleName !== label) node.setAttribute('aria-label', accessibleName);
  node.addEventListener('click', async () => {
    node.disabled = true;
    try {
      await onClick();
    } catch (error) {
      failed(error);
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

// ---- uploads: Uppy's Dashboard through the Companion routes ----------------------------------

let uppy: Uppy | undefined;
/** Whose uploads the Dashboard holds: each user's Uppy (and what Golden Retriever keeps) is their own. */
let uppyOwner: string | undefined;

function startUppy(username: string) {
  if (uppy && uppyOwner === username) return;
  if (uppy) {
    // Another user signs in on this page (the last one's session ended without a sign-out): their
    // unfinished uploads stay restorable in this browser, for when they sign in again.
    const retriever = uppy.getPlugin('GoldenRetriever');
    if (retriever) uppy.removePlugin(retriever);
    uppy.destroy();
  }
  uppyOwner = username;
  uppy = new Uppy({ id: `console-${username}`, autoProceed: false })
    .use(Dashboard, {
      inline: true,
      target: '#uppy',
      width: '100%',
      height: 320,
      hideProgressDetails: false,
      proudlyDisplayPoweredByUppy: false,
      note: 'Files of any size: multipart uploads straight to S3, tracked as jobs below.',
    })
    // Companion's S3 routes on this origin, every file as a multipart upload job (small ones too),
    // several parts at once (web/parallel-multipart.ts), cut by the console's own plan, which
    // web/part-match.ts checks against.
    // Each part checked by S3 against its CRC32 from the local file, and the whole file at completion
    // (web/part-checksums.ts).
    .use(ParallelMultipart, {
      endpoint: API,
      chunkSize: consoleChunkSize,
      checksumAlgorithm: CONSOLE_CHECKSUM_ALGORITHM,
    })
    // A page closed or crashed mid-upload: opened again, the Dashboard shows its files, and each
    // resumes its upload job from the parts S3 holds (Uppy keeps the job's key and id per file). Files
    // up to 10 MiB come back whole (IndexedDB); larger ones must be picked again, and then resume.
    // Kept as long as the janitor keeps an idle upload (JANITOR_UPLOAD_IDLE_HOURS, 24 by default).
    .use(GoldenRetriever, { expires: 24 * 60 * 60 * 1000 });
  // A key per file (as the README's snippet): a retry after a lost create answer resumes that upload.
  // And the file's size, which Uppy does not send: the service then completes the upload only when S3
  // holds exactly that many bytes, and counts them against the bytes in flight from the start.
  uppy.on('file-added', (file) =>
    uppy?.setFileMeta(file.id, {
      [IDEMPOTENCY_KEY_METADATA_FIELD]: crypto.randomUUID(),
      ...(file.size ? { size: file.size } : {}),
    }),
  );
  uppy.on('upload-success', () => {
    void refreshFiles();
    void refreshJobs();
  });
  uppy.on('upload-error', (file, error) => {
    const ended = file && uploadIdOf(uppy?.getFile(file.id));
    if (file && ended && endedUploads.delete(ended)) {
      // Restored from an earlier page, but its job has ended since: nothing to resume, so start over.
      notify(`the earlier upload of ${file.name} (job ${ended}) has ended; sending ${file.name} again`);
      uppy?.setFileState(file.id, { s3Multipart: undefined });
      uppy?.retryUpload(file.id);
      return;
    }
    const refusal = file?.name ? createRefusals.get(file.name) : undefined;
    if (file && refusal?.code === 'UploadInProgress') {
      void offerHeldUpload(file, refusal).catch(failed);
      return;
    }
    if (file && refusal?.code === 'FileExists') {
      offerReplace(file);
      return;
    }
    notify(`${file?.name ?? 'a file'}: ${error.message}`, true);
  });
  // Uppy does not tell the service how far a part has gone (Companion's routes sign parts and learn
  // the sizes at completion), so the page's own uploads show Uppy's progress in the jobs list.
  uppy.on('upload-progress', (file, progress) => {
    const uploadId = file && uploadIdOf(uppy?.getFile(file.id));
    if (!uploadId || !progress.bytesTotal) return;
    liveProgress.set(uploadId, Math.floor((100 * progress.bytesUploaded) / progress.bytesTotal));
    scheduleRender();
  });
}

type ConsoleFile = UppyFile<Record<string, unknown>, Record<string, never>>;

/**
 * This file's name is held by another upload job (409 UploadInProgress): most often the same file
 * from a page closed mid-way in another browser, or one whose stored state is gone, which nothing
 * will finish. When that job came through Uppy's routes and every part S3 holds of it is this file's
 * (web/part-match.ts), the person may resume it here; when it holds another file, replace it. Never
 * done unasked: the page that started it may still be open and sending.
 */
async function offerHeldUpload(file: ConsoleFile, { jobId, key }: CreateRefusal) {
  const name = file.name ?? 'this file';
  if (!jobId || !key) {
    notify(
      `${name} is already being uploaded by another upload: cancel it in the jobs list, then retry`,
      true,
    );
    return;
  }
  const send = () => void uppy?.retryUpload(file.id);
  const replace = (label: string) =>
    button(label, async () => {
      await call('DELETE', `/upload/${jobId}`);
      notify(`upload job ${jobId} cancelled; sending ${name}`);
      send();
      await refreshJobs();
    });
  const job = (await unlessNotFound(call<{ job: Job }>('GET', `/jobs/${jobId}`)))?.job;
  if (!job || TERMINAL_STATUSES.has(job.status)) {
    // Ended since the refusal: the name is free.
    notify(`the upload that held ${name} (job ${jobId}) has ended; sending ${name}`);
    send();
    return;
  }
  if (job.status !== 'UPLOADING') {
    notify(`${name} is being completed by upload job ${jobId}; retry this file if it fails`, true);
    return;
  }
  if (job.size > 0 && job.size !== file.size) {
    notify(`upload job ${jobId} is sending another file named ${name} (${bytes(job.size)})`, true, [
      replace('Replace it with this file'),
    ]);
    return;
  }
  const parts = await unlessNotFound(
    call<ListedPart[]>('GET', `/s3/multipart/${jobId}?key=${encodeURIComponent(key)}`),
  );
  if (!parts) {
    // Opened by POST /upload (the CLI, the client library): its parts have sizes of its own.
    endedUploads.delete(jobId);
    notify(
      `${name} is already being uploaded by job ${jobId}, from the CLI or the API, which this page cannot resume:`,
      true,
      [replace('Cancel it and send this file')],
    );
    return;
  }
  notify(`checking ${name} against the ${parts.length} part(s) S3 holds of upload job ${jobId}…`);
  const match = await matchParts(file.data as Blob, parts);
  if (!match.same) {
    notify(
      `upload job ${jobId} is sending another file named ${name} (part ${match.partNumber}: ${match.why})`,
      true,
      [replace('Replace it with this file')],
    );
    return;
  }
  notify(
    `${name} is already being uploaded by job ${jobId}, from a page closed mid-way or another browser${match.parts > 0 ? `, and the ${match.parts} part(s) S3 holds of it are this file's` : '; S3 holds no part of it yet'}. If no other page is still sending it:`,
    false,
    [
      button('Resume it here', async () => {
        const state: MultipartState = { key, uploadId: jobId };
        // An upload created with checksums (by a page of this version) wants one with every part.
        if (job.checksumAlgorithm === CONSOLE_CHECKSUM_ALGORITHM)
          state.checksumAlgorithm = CONSOLE_CHECKSUM_ALGORITHM;
        uppy?.setFileState(file.id, { s3Multipart: state });
        notify(`resuming upload job ${jobId}: sending what S3 lacks of ${name}`);
        send();
      }),
    ],
  );
}

/**
 * A file of this name is already in the uploads folder (409 FileExists): the person may replace it.
 * The retry says `overwrite` in Uppy's meta, under a new idempotency key (the refused create's key
 * was for another request).
 */
function offerReplace(file: ConsoleFile) {
  const name = file.name ?? 'this file';
  notify(`${name} is already in your files`, true, [
    button(`Replace ${name}`, async () => {
      uppy?.setFileMeta(file.id, { overwrite: true, [IDEMPOTENCY_KEY_METADATA_FIELD]: crypto.randomUUID() });
      notify(`replacing ${name}`);
      void uppy?.retryUpload(file.id);
    }),
  ]);
}

const uploadIdOf = (file: unknown) =>
  (file as { s3Multipart?: { uploadId?: string } } | undefined)?.s3Multipart?.uploadId;

/** Percent done of the uploads this page is sending, by job id (their jobs know only finished parts). */
const liveProgress = new Map<string, number>();
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    renderJobs(lastJobs);
  }, 250);
}

/** Uppy's files whose upload jobs a kill ended: taken out of the Dashboard, with a word why. */
function dropKilled(jobIds: string[]) {
  if (!uppy) return;
  const killed = new Set(jobIds);
  for (const file of uppy.getFiles() as ConsoleFile[]) {
    const uploadId = uploadIdOf(file);
    if (uploadId && killed.has(uploadId)) uppy.removeFile(file.id);
  }
}

// ---- jobs --------------------------------------------------------------------------------------

const rows = new Map<string, { row: HTMLTableRowElement; key: string }>();

function percent(job: Job): number {
  const { bytesDone, bytesTotal, partsDone, partCount } = job.progress;
  if (job.status === 'COMPLETED' || job.status === 'SUCCEEDED') return 100;
  const live = job.status === 'UPLOADING' ? liveProgress.get(job.jobId) : undefined;
  if (live !== undefined) return live;
  if (bytesTotal > 0) return Math.min(100, Math.floor((100 * bytesDone) / bytesTotal));
  return partCount > 0 ? Math.floor((100 * partsDone) / partCount) : 0;
}

function jobActions(job: Job): Node[] {
  const actions: Node[] = [];
  if (!TERMINAL_STATUSES.has(job.status) && job.status !== 'CANCELLING') {
    const path = job.type === 'upload' ? `/upload/${job.jobId}` : `/export/${job.jobId}`;
    actions.push(
      button(
        'Cancel',
        async () => {
          await call('DELETE', path);
          if (job.type === 'upload') dropKilled([job.jobId]);
          notify(`${job.type} of ${job.filename} cancelled`);
          await refreshJobs();
        },
        `Cancel ${job.type} of ${job.filename}`,
      ),
    );
  }
  if (job.downloadUrl) {
    actions.push(
      element('a', {
        href: job.downloadUrl,
        textContent: 'Download',
        rel: 'noreferrer',
        className: 'download',
        title: `Download the ${job.format ?? ''} export of ${job.filename}`,
      }),
    );
  }
  return actions;
}

function renderJob(job: Job): HTMLTableRowElement {
  const value = percent(job);
  const bar = element('progress', { max: 100, value });
  bar.setAttribute('aria-label', `${job.type} of ${job.filename}: ${value} %`);
  const row = element(
    'tr',
    {},
    element('td', { className: 'name' }, job.filename),
    element('td', {}, job.type === 'export' ? `export (${job.format})` : 'upload'),
    element('td', { className: `status status-${job.status}` }, job.status),
    element('td', { className: 'progress' }, bar, ` ${value} %`),
    element('td', { className: 'actions' }, ...jobActions(job)),
  );
  row.dataset.jobId = job.jobId;
  if (job.error) row.title = job.error;
  return row;
}

let lastStatuses = new Map<string, string>();
let lastJobs: Job[] = [];

/**
 * What GET /jobs leaves out of an export (its format, and once it has SUCCEEDED its download URL),
 * read from GET /jobs/{jobId} once per status an export is seen in, and again when the URL expires.
 */
const exportDetails = new Map<
  string,
  { status: string; format?: string; downloadUrl?: string; expiresAt?: string }
>();

async function withExportDetails(job: Job): Promise<Job> {
  if (job.type !== 'export') return job;
  let details = exportDetails.get(job.jobId);
  const expired = details?.expiresAt !== undefined && Date.parse(details.expiresAt) < Date.now() + 60_000;
  if (!details || details.status !== job.status || expired) {
    const { job: full } = await call<{ job: Job & { expiresAt?: string } }>('GET', `/jobs/${job.jobId}`);
    details = {
      status: full.status,
      ...(full.format ? { format: full.format } : {}),
      ...(full.downloadUrl ? { downloadUrl: full.downloadUrl } : {}),
      ...(full.expiresAt ? { expiresAt: full.expiresAt } : {}),
    };
    exportDetails.set(job.jobId, details);
  }
  return { ...job, ...details, status: job.status };
}

async function refreshJobs() {
  const { jobs } = await call<{ jobs: Job[] }>('GET', '/jobs?limit=25');
  lastJobs = await Promise.all(jobs.map(withExportDetails));
  renderJobs(lastJobs);
}

function renderJobs(jobs: Job[]) {
  const body = $('#jobs tbody');
  const seen = new Set<string>();
  let finishedUpload = false;
  jobs.forEach((job, index) => {
    seen.add(job.jobId);
    if (job.type === 'upload' && job.status === 'COMPLETED' && lastStatuses.get(job.jobId) !== 'COMPLETED')
      finishedUpload = true;
    // A row is rebuilt only when what it shows changed, so keyboard focus stays put between polls.
    const key = `${job.status}|${percent(job)}|${job.format}|${job.downloadUrl}`;
    const existing = rows.get(job.jobId);
    let row: HTMLTableRowElement;
    if (!existing || existing.key !== key) {
      row = renderJob(job);
      existing?.row.replaceWith(row);
      rows.set(job.jobId, { row, key });
    } else {
      row = existing.row;
    }
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
  });
  for (const [jobId, { row }] of rows) {
    if (!seen.has(jobId)) {
      row.remove();
      rows.delete(jobId);
    }
  }
  $('#no-jobs').hidden = jobs.length > 0;
  if (finishedUpload && lastStatuses.size > 0) void refreshFiles();
  lastStatuses = new Map(jobs.map((job) => [job.jobId, job.status]));
}

// ---- files and exports ---------------------------------------------------------------------

async function startExport(name: string, format: 'raw' | 'gzip') {
  await call('POST', '/export', { filename: name, format });
  notify(`export of ${name} (${format}) started`);
  await refreshJobs();
}

async function refreshFiles() {
  const { files } = await call<{ files: FileEntry[] }>('GET', '/files');
  const body = $('#files tbody');
  body.replaceChildren(
    ...files.map((file) =>
      element(
        'tr',
        {},
        element('td', { className: 'name' }, file.name),
        element('td', {}, bytes(file.size)),
        element('td', {}, new Date(file.lastModified).toLocaleString()),
        element(
          'td',
          { className: 'actions' },
          button('Export raw', () => startExport(file.name, 'raw'), `Export ${file.name} raw`),
          button('Export gzip', () => startExport(file.name, 'gzip'), `Export ${file.name} as gzip`),
        ),
      ),
    ),
  );
  $('#no-files').hidden = files.length > 0;
}

// ---- kill routes -----------------------------------------------------------------------------

async function kill(kind: 'upload' | 'export') {
  try {
    if (kind === 'upload') {
      const { aborted } = await call<{ aborted: { jobId: string; filename: string }[] }>(
        'DELETE',
        '/upload/kill',
      );
      dropKilled(aborted.map((job) => job.jobId));
      notify(`killed ${aborted.length} upload(s): ${aborted.map((job) => job.filename).join(', ')}`);
    } else {
      const { cancelled } = await call<{ cancelled: { filename: string }[] }>('POST', '/export/kill');
      notify(`killed ${cancelled.length} export(s): ${cancelled.map((job) => job.filename).join(', ')}`);
    }
  } catch (error) {
    // 404 NoUploadFound / NoExportFound: nothing was running, which is news, not a failure.
    if (error instanceof ApiError && error.status === 404) notify(error.message);
    else throw error;
  }
  await refreshJobs();
}

// ---- session ---------------------------------------------------------------------------------

let poller: ReturnType<typeof setInterval> | undefined;

/** The session as the service answers it (POST /auth/session, its renewal, GET /auth/session). */
interface Session {
  username: string;
  /** Seconds the token in the cookie has left. */
  expiresIn: number;
  /** When the sign-in ends: no renewal goes past it. */
  sessionExpiresAt: string;
}

let renewal: ReturnType<typeof setTimeout> | undefined;

/**
 * Renews the session cookie (POST /auth/session/renew) once two thirds of its token's life have
 * passed, as long as the page is open, hidden or not: an upload of hours keeps its session, up to the
 * sign-in's end. A renewal that finds the network down tries again a minute later; a refused one
 * (401: revoked, or the sign-in's end) signs the page out through call().
 */
function scheduleRenewal(session: Session, delayMs = (session.expiresIn * 1000 * 2) / 3) {
  clearTimeout(renewal);
  const tokenEnds = Date.now() + session.expiresIn * 1000;
  // The token already lives as long as the sign-in: renewing would not extend it.
  if (Date.parse(session.sessionExpiresAt) - tokenEnds < 2000) return;
  renewal = setTimeout(async () => {
    try {
      scheduleRenewal(await call<Session>('POST', '/auth/session/renew'));
    } catch (error) {
      // The network or a 5xx, not a refusal: again in a minute, while the token lives.
      const refused = error instanceof ApiError && error.status < 500;
      const left = tokenEnds - Date.now();
      if (!refused && left > 60_000) scheduleRenewal({ ...session, expiresIn: left / 1000 }, 60_000);
    }
  }, delayMs);
}

function signedIn(session: Session) {
  const { username } = session;
  scheduleRenewal(session);
  $('#username').textContent = username;
  $('#who').hidden = false;
  $('#signin-view').hidden = true;
  $('#app').hidden = false;
  startUppy(username);
  void refreshJobs().catch(failed);
  void refreshFiles().catch(failed);
  poller ??= setInterval(() => {
    if (!document.hidden) void refreshJobs().catch(() => undefined);
  }, POLL_MS);
}

function signedOut(message = '') {
  clearTimeout(renewal);
  if (poller) clearInterval(poller);
  poller = undefined;
  $('#who').hidden = true;
  $('#app').hidden = true;
  $('#signin-view').hidden = false;
  $('#signin-error').textContent = message;
  for (const { row } of rows.values()) row.remove();
  rows.clear();
  lastStatuses = new Map();
  lastJobs = [];
  liveProgress.clear();
  exportDetails.clear();
  $('#files tbody').replaceChildren();
  notify('');
  $<HTMLInputElement>('#password').value = '';
  $<HTMLInputElement>('#username-input').focus();
}

$<HTMLFormElement>('#signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget as HTMLFormElement;
  const submit = form.querySelector('button')!;
  const username = $<HTMLInputElement>('#username-input').value;
  const password = $<HTMLInputElement>('#password').value;
  signinSubmitted = true;
  $('#signin-error').textContent = '';
  submit.disabled = true;
  try {
    signedIn(await call<Session>('POST', '/auth/session', { username, password }));
  } catch (error) {
    $('#signin-error').textContent = error instanceof Error ? error.message : String(error);
  } finally {
    submit.disabled = false;
  }
});

$('#signout').addEventListener('click', async () => {
  // Uploads in flight stop with the session (their jobs are aborted, not left for the janitor).
  uppy?.cancelAll();
  try {
    await call('DELETE', '/auth/session');
  } finally {
    signedOut('signed out');
  }
});

$('#kill-uploads').replaceWith(button('Kill all uploads', () => kill('upload')));
$('#kill-exports').replaceWith(button('Kill all exports', () => kill('export')));
$('#refresh-files').replaceWith(button('Refresh', () => refreshFiles(), 'Refresh the files'));

// Who is signed in, once at load. The form has the focus before the question is asked: keys typed
// while it is on its way must land in the form, not be lost. Its answer may come after the person
// has already signed in (or failed to): then it is stale and changes nothing, else it would sign the
// page out again or wipe the error message. Not signed in, the page leaves the form and the focus
// as they are: what was typed meanwhile stays.
let signinSubmitted = false;
$<HTMLInputElement>('#username-input').focus();
call<Session>('GET', '/auth/session').then(
  (session) => {
    if (!signinSubmitted) signedIn(session);
  },
  () => {
    $('#signin-view').hidden = false;
  },
);
