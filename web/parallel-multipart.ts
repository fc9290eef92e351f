/**
 * The console's uploader: S3 multipart uploads through the service's Companion routes, as
 * `@uppy/aws-s3` 6 makes them in its `companionEndpoint` mode (the same requests in the same order
 * for each part, the same `s3Multipart` file state that Golden Retriever keeps, the same events for
 * the Dashboard), with one difference: several parts of a file in flight at once.
 *
 * Why not AwsS3 itself: version 6 sends the parts of one file one after another, its `limit`
 * bounding files rather than requests (transloadit/uppy#6547; a fix is proposed in #6568). A single
 * large file then moves at one connection's pace, every part also waiting for its own URL:
 * `node bench/console.ts` measured the console at 0.45 of the client library with the same parts.
 * Once Uppy sends parts in parallel, the console can go back to AwsS3 (its tests do not care which).
 *
 * The protocol, per file: POST /s3/multipart {filename, type, metadata} gives `{key, uploadId}`
 * (kept as the file's `s3Multipart`, so a page opened again resumes it); each part is
 * GET /s3/multipart/{uploadId}/{n}?key= for a URL, then a PUT of the bytes to S3, whose ETag is kept;
 * a resume first asks GET /s3/multipart/{uploadId}?key= for the parts S3 holds; the end is
 * POST /s3/multipart/{uploadId}/complete?key= {parts}; a cancel or a removed file sends DELETE
 * /s3/multipart/{uploadId}?key=. At most `partsInFlight` PUTs run at once over all files: a browser
 * opens six connections to one origin.
 *
 * With `checksumAlgorithm` (the console's), the create asks for it in the metadata, each part's URL is
 * asked for with the part's CRC (`&checksum=`) and its PUT carries the header the answer names, and the
 * completion sends the whole file's CRC: the service's Companion routes take these, Companion does not.
 */
import { BasePlugin, EventManager, type PluginOpts, type Uppy, type UppyFile } from '@uppy/core';
import { fetcher, filterFilesToEmitUploadStarted, filterFilesToUpload } from '@uppy/core/utils';
import { FullObjectCrc } from '../common/crc-combine.ts';
import { type ComputedChecksumAlgorithm, crc32Base64 } from './part-checksums.ts';
import { etagIsMd5Of, type ListedPart } from './part-match.ts';

type Meta = Record<string, unknown>;
type Body = Record<string, never>;
type File = UppyFile<Meta, Body>;

export interface ParallelMultipartOptions extends PluginOpts {
  /** The origin that serves the Companion routes (`/s3/...`). */
  endpoint: string;
  /** A file's part size, from its size. */
  chunkSize: (size: number) => number;
  /** Part PUTs in flight at once, over all files (default 6). */
  partsInFlight?: number;
  /**
   * Creates uploads checked with this checksum (web/part-checksums.ts): each part URL binds its
   * part's CRC, and the completion names the whole file's. Only CRC32 is computed here.
   */
  checksumAlgorithm?: ComputedChecksumAlgorithm;
}

/** A file's upload as its `s3Multipart` state keeps it (Golden Retriever stores it with the file). */
export interface MultipartState {
  key: string;
  uploadId: string;
  /** Set when the upload was created with one: its parts and its completion carry checksums. */
  checksumAlgorithm?: ComputedChecksumAlgorithm;
}

/** A request to the Companion routes that did not succeed: says which, and what it answered. */
class CompanionError extends Error {
  readonly status: number;
  /** The service's error code (its JSON error shape), when it answered one. */
  readonly code: string | undefined;
  constructor(what: string, status: number, statusText: string, error?: { code?: string; message?: string }) {
    // The service's own words (e.g. which part differs) over the bare status text.
    super(`${what} failed: ${status} ${error?.message ?? statusText}`);
    this.status = status;
    this.code = error?.code;
  }
}

/** Hands out `size` slots; a waiter whose signal aborts leaves the line. */
class Slots {
  private free: number;
  private readonly waiting = new Set<() => void>();
  constructor(size: number) {
    this.free = size;
  }

  async take(signal: AbortSignal): Promise<() => void> {
    while (this.free === 0) {
      signal.throwIfAborted();
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake);
          // Out of the line either way: a release must wake a waiter that still waits.
          this.waiting.delete(wake);
          resolve();
        };
        this.waiting.add(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
    signal.throwIfAborted();
    this.free--;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.free++;
      const [next] = this.waiting;
      next?.();
    };
  }
}

export default class ParallelMultipart extends BasePlugin<ParallelMultipartOptions, Meta, Body> {
  private readonly slots: Slots;
  readonly partsInFlight: number;
  private readonly uploads = new Map<string, FileUpload>();

  constructor(uppy: Uppy<Meta, Body>, opts: ParallelMultipartOptions) {
    super(uppy, opts);
    this.type = 'uploader';
    this.id = opts.id ?? 'ParallelMultipart';
    this.partsInFlight = opts.partsInFlight ?? 6;
    this.slots = new Slots(this.partsInFlight);
  }

  override install() {
    this.setResumable(true);
    this.uppy.addUploader(this.upload);
  }

  override uninstall() {
    this.setResumable(false);
    this.uppy.removeUploader(this.upload);
    for (const upload of this.uploads.values()) upload.stop();
  }

  /** Tells the Dashboard that uploads can be paused and resumed. */
  private setResumable(value: boolean) {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: value } });
  }

  private readonly upload = async (fileIDs: string[]) => {
    const files = filterFilesToUpload(this.uppy.getFilesByIds(fileIDs)) as File[];
    this.uppy.emit('upload-start', filterFilesToEmitUploadStarted(files) as File[]);
    await Promise.allSettled(
      files.map(
        (file) =>
          new Promise<void>((resolve, reject) => {
            const upload = new FileUpload(this, file, {
              resolve: () => {
                this.uploads.delete(file.id);
                resolve();
              },
              reject: (error) => {
                this.uploads.delete(file.id);
                reject(error);
              },
            });
            this.uploads.set(file.id, upload);
            void upload.start();
          }),
      ),
    );
  };

  /** A Companion route's answer as JSON; a refusal throws CompanionError. */
  async call<T>(
    what: string,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    const response = await fetch(`${this.opts.endpoint}/s3${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      ...(signal ? { signal } : {}),
    });
    if (!response.ok) {
      const answer = (await response.json().catch(() => undefined)) as
        | { error?: { code?: string; message?: string } }
        | undefined;
      throw new CompanionError(what, response.status, response.statusText, answer?.error);
    }
    return (await response.json()) as T;
  }

  takeSlot(signal: AbortSignal) {
    return this.slots.take(signal);
  }
}

/** One file's upload: started, paused, resumed and retried by the Dashboard's events. */
class FileUpload {
  private readonly chunk: number;
  private readonly count: number;
  /** ETag of each part S3 holds, by index (part number - 1). */
  private readonly etags: (string | undefined)[];
  /** Bytes of each part sent so far (its XHR's progress), by index. */
  private readonly sent: number[];
  /** Each part's checksum (base64) once computed, by index: for its URL and the whole file's. */
  private readonly checksums: (string | undefined)[];
  private readonly events: EventManager<Meta, Body>;
  private attempt: AbortController | undefined;
  private ended = false;
  private readonly plugin: ParallelMultipart;
  private file: File;
  private readonly settle: { resolve: () => void; reject: (error: Error) => void };

  constructor(
    plugin: ParallelMultipart,
    file: File,
    settle: { resolve: () => void; reject: (error: Error) => void },
  ) {
    this.plugin = plugin;
    this.file = file;
    this.settle = settle;
    const size = this.bytes()?.size ?? 0;
    this.chunk = plugin.opts.chunkSize(size);
    this.count = Math.max(1, Math.ceil(size / this.chunk));
    this.etags = new Array(this.count).fill(undefined);
    this.sent = new Array(this.count).fill(0);
    this.checksums = new Array(this.count).fill(undefined);
    this.events = new EventManager(plugin.uppy);
    const id = file.id;
    this.events.onFilePause(id, (paused) => (paused ? this.pause() : void this.start()));
    this.events.onPauseAll(id, () => this.pause());
    this.events.onResumeAll(id, () => void this.start());
    this.events.onRetry(id, () => void this.start());
    this.events.onRetryAll(id, () => void this.start());
    this.events.onFileRemove(id, () => this.cancel());
    this.events.onCancelAll(id, () => this.cancel());
  }

  private get state() {
    return this.file.s3Multipart as MultipartState | undefined;
  }

  private query() {
    return `?${new URLSearchParams({ key: this.state!.key })}`;
  }

  /** Starts, or goes on after a pause or an error: from what S3 holds once the upload exists. */
  async start() {
    if (this.ended) return;
    this.attempt?.abort();
    const attempt = new AbortController();
    this.attempt = attempt;
    const { signal } = attempt;
    try {
      // The latest state: a page may have set `s3Multipart` (a resume, a restart) since.
      this.file = (this.plugin.uppy.getFile(this.file.id) as File | undefined) ?? this.file;
      if (!this.bytes()) throw new Error(`${this.file.name}: the file's bytes are missing; pick it again`);
      if (this.state?.uploadId) await this.syncParts(signal);
      else await this.create(signal);
      await this.sendParts(signal);
      let location: string;
      try {
        location = await this.complete(signal);
      } catch (error) {
        // S3 holds a part that is not this file's: resumed parts are taken by their size, and an
        // earlier page may have sent another file of this name and size. Those parts go again.
        if (!(error instanceof CompanionError && error.code === 'ChecksumMismatch')) throw error;
        const foreign = await this.partsNotOfThisFile(signal);
        if (foreign.length === 0) throw error;
        for (const index of foreign) this.etags[index] = undefined;
        await this.sendParts(signal);
        location = await this.complete(signal);
      }
      this.finish(location);
    } catch (error) {
      // A pause, a newer attempt, a cancel: not a failure.
      if (signal.aborted) return;
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  pause() {
    this.attempt?.abort();
  }

  /** Completes from the parts sent, naming the whole file's checksum when the upload has one. */
  private async complete(signal: AbortSignal): Promise<string> {
    const checksum = await this.wholeFileChecksum();
    const { location } = await this.plugin.call<{ location: string }>(
      'completing the upload',
      'POST',
      `/multipart/${encodeURIComponent(this.state!.uploadId)}/complete${this.query()}`,
      {
        parts: this.etags.map((etag, index) => ({ PartNumber: index + 1, ETag: etag })),
        ...(checksum ? { checksum } : {}),
      },
      signal,
    );
    return location;
  }

  /**
   * The parts S3 holds whose ETag is not the MD5 of the same range of the local file (web/part-match.ts
   * has the S3 model), by index: after S3 found the whole file's checksum wrong.
   */
  private async partsNotOfThisFile(signal: AbortSignal): Promise<number[]> {
    const listed = await this.listParts(signal);
    const foreign: number[] = [];
    for (const part of listed) {
      const index = part.PartNumber - 1;
      if (index < 0 || index >= this.count) continue;
      if (!(await etagIsMd5Of(part.ETag, this.part(index)))) foreign.push(index);
    }
    return foreign;
  }

  private listParts(signal: AbortSignal) {
    return this.plugin.call<ListedPart[]>(
      'listing the parts',
      'GET',
      `/multipart/${encodeURIComponent(this.state!.uploadId)}${this.query()}`,
      undefined,
      signal,
    );
  }

  /** The file was removed or every upload cancelled: stop, and end the upload job (its parts go too). */
  cancel() {
    const state = this.state;
    this.stop();
    if (state?.uploadId) {
      void this.plugin
        .call(
          'aborting the upload',
          'DELETE',
          `/multipart/${encodeURIComponent(state.uploadId)}${this.query()}`,
        )
        .catch(() => undefined);
    }
    this.settle.resolve();
  }

  /** Stops for good, leaving the upload where it is. */
  stop() {
    this.ended = true;
    this.attempt?.abort();
    this.events.remove();
  }

  private async create(signal: AbortSignal) {
    const { checksumAlgorithm } = this.plugin.opts;
    const { key, uploadId } = await this.plugin.call<{ key: string; uploadId: string }>(
      'creating the upload',
      'POST',
      '/multipart',
      {
        filename: this.file.name,
        type: this.file.type || 'application/octet-stream',
        metadata: { ...this.file.meta, ...(checksumAlgorithm ? { checksumAlgorithm } : {}) },
      },
      signal,
    );
    this.setState({ key, uploadId, ...(checksumAlgorithm ? { checksumAlgorithm } : {}) });
  }

  /** Marks the parts S3 already holds as sent (a resume). */
  private async syncParts(signal: AbortSignal) {
    const path = `/multipart/${encodeURIComponent(this.state!.uploadId)}${this.query()}`;
    const parts = await this.listParts(signal);
    const length = (index: number) => this.range(index).end - this.range(index).start;
    const cutOtherwise = parts.some((part) => {
      const index = part.PartNumber - 1;
      return index < 0 || index >= this.count || part.Size !== length(index);
    });
    if (cutOtherwise) {
      // Parts of other sizes (a page of an earlier version, another client): the service would
      // refuse to complete them with this plan's parts, so that upload goes and a new one starts.
      await this.plugin.call('aborting an upload cut another way', 'DELETE', path, undefined, signal);
      this.setState(undefined);
      await this.create(signal);
      return;
    }
    for (const part of parts) {
      const index = part.PartNumber - 1;
      this.etags[index] = part.ETag;
      this.sent[index] = length(index);
    }
    this.progress();
  }

  /** The file's bytes: a local file always has them (a ghost from an earlier page has none yet). */
  private bytes(): Blob | undefined {
    const data = this.file.data;
    return data instanceof Blob ? data : undefined;
  }

  private range(index: number) {
    const size = this.bytes()!.size;
    return { start: index * this.chunk, end: Math.min(size, (index + 1) * this.chunk) };
  }

  private part(index: number): Blob {
    const { start, end } = this.range(index);
    return this.bytes()!.slice(start, end);
  }

  /** A part's checksum, for an upload created with one (computed once, from the local file). */
  private async checksum(index: number): Promise<string | undefined> {
    if (!this.state?.checksumAlgorithm) return undefined;
    this.checksums[index] ??= await crc32Base64(this.part(index));
    return this.checksums[index];
  }

  /**
   * The whole file's CRC from its parts' (those S3 held before this page included: read again from
   * the local file), for S3 to check the object against. A part S3 holds that is not this file's
   * then fails the completion (409 ChecksumMismatch) instead of becoming part of the file.
   */
  private async wholeFileChecksum(): Promise<string | undefined> {
    if (!this.state?.checksumAlgorithm) return undefined;
    const whole = new FullObjectCrc(this.state.checksumAlgorithm);
    for (let index = 0; index < this.count; index++) {
      const { start, end } = this.range(index);
      whole.append((await this.checksum(index))!, end - start);
    }
    return whole.digest();
  }

  /** Sends every part S3 lacks, several at once; the first to fail stops the others. */
  private async sendParts(signal: AbortSignal) {
    const left = this.etags.flatMap((etag, index) => (etag === undefined ? [index] : []));
    // Parts cut off by a pause or an error start again from their first byte.
    for (const index of left) this.sent[index] = 0;
    this.progress();
    const parts = new AbortController();
    const stop = () => parts.abort();
    signal.addEventListener('abort', stop, { once: true });
    const worker = async () => {
      for (let index = left.shift(); index !== undefined; index = left.shift()) {
        const release = await this.plugin.takeSlot(parts.signal);
        try {
          await this.sendPart(index, parts.signal);
        } finally {
          release();
        }
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(left.length, this.plugin.partsInFlight) }, () =>
          worker().catch((error: unknown) => {
            parts.abort();
            throw error;
          }),
        ),
      );
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  private async sendPart(index: number, signal: AbortSignal) {
    const { uploadId, key } = this.state!;
    const checksum = await this.checksum(index);
    signal.throwIfAborted();
    const { url, headers } = await this.plugin.call<{ url: string; headers?: Record<string, string> }>(
      `signing part ${index + 1}`,
      'GET',
      `/multipart/${encodeURIComponent(uploadId)}/${index + 1}?${new URLSearchParams({ key, ...(checksum ? { checksum } : {}) })}`,
      undefined,
      signal,
    );
    const { start, end } = this.range(index);
    const xhr = await fetcher(url, {
      method: 'PUT',
      body: this.part(index),
      // The part's checksum header, exactly as its URL was signed with it.
      ...(headers ? { headers } : {}),
      signal,
      retries: 3,
      // S3's own faults and throttling are worth another try; a refusal (an expired URL) is not.
      shouldRetry: (request) => request.status === 0 || request.status >= 500 || request.status === 429,
      onUploadProgress: (event) => {
        if (!event.lengthComputable) return;
        this.sent[index] = event.loaded;
        this.progress();
      },
    });
    const etag = xhr.getResponseHeader('etag');
    if (!etag)
      throw new Error(`part ${index + 1}: S3 answered no ETag (is it exposed by the bucket's CORS?)`);
    this.etags[index] = etag;
    this.sent[index] = end - start;
    this.progress();
  }

  private setState(state: MultipartState | undefined) {
    this.plugin.uppy.setFileState(this.file.id, { s3Multipart: state });
    this.file = (this.plugin.uppy.getFile(this.file.id) as File | undefined) ?? this.file;
  }

  private progress() {
    const file = this.plugin.uppy.getFile(this.file.id);
    if (!file || this.ended) return;
    this.plugin.uppy.emit('upload-progress', file, {
      uploadStarted: file.progress.uploadStarted ?? Date.now(),
      bytesUploaded: this.sent.reduce((sum, bytes) => sum + bytes, 0),
      bytesTotal: this.bytes()?.size ?? 0,
    });
  }

  private finish(location: string) {
    this.events.remove();
    this.ended = true;
    const file = this.plugin.uppy.getFile(this.file.id);
    if (!file) return this.settle.resolve();
    const key = this.state?.key;
    this.plugin.uppy.setFileState(file.id, { s3Multipart: undefined });
    this.plugin.uppy.emit('upload-success', this.plugin.uppy.getFile(file.id), {
      status: 200,
      body: { location, key } as unknown as Body,
      uploadURL: location,
    });
    this.settle.resolve();
  }

  private fail(error: Error) {
    // Uppy's retry runs the uploader again, whose new FileUpload resumes from what S3 holds: this one
    // stops listening, or a retry would start it too.
    this.ended = true;
    this.events.remove();
    const file = this.plugin.uppy.getFile(this.file.id);
    if (file) this.plugin.uppy.emit('upload-error', file, error);
    this.settle.reject(error);
  }
}
