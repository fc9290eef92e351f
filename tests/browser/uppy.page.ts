/// <reference types="@uppy/aws-s3" />
/**
 * Appended by tests/browser/uppy.test.ts to the README's Uppy snippet (which defines `uppy` and the
 * Bearer-adding fetch wrapper) and bundled with it: a plain page that shows one upload's progress and
 * lets the test drive Uppy and read what it saw. Not a module of its own: it refers to the snippet's
 * `uppy`.
 */
declare const uppy: import('@uppy/core').Uppy;

interface PageEvent {
  type: string;
  at: number;
  detail?: unknown;
}

const events: PageEvent[] = [];
const record = (type: string, detail?: unknown) => events.push({ type, at: Date.now(), detail });
const status = document.querySelector('#status')!;
const bar = document.querySelector('progress')!;
const show = (text: string) => {
  status.textContent = text;
};

let pauseAfterPart: number | undefined;
let cancelAfterPart: number | undefined;

uppy.on('file-added', (file) => show(`${file.name}: ready (${file.size} bytes)`));
uppy.on('upload-progress', (file, progress) => {
  if (!file || !progress.bytesTotal) return;
  bar.value = progress.bytesUploaded / progress.bytesTotal;
  show(`${file.name}: ${Math.round((100 * progress.bytesUploaded) / progress.bytesTotal)} %`);
});
uppy.on('s3-multipart:part-uploaded', (file, part) => {
  record('part-uploaded', { partNumber: part.PartNumber, upload: uppy.getFile(file.id)?.s3Multipart });
  if (part.PartNumber === pauseAfterPart) {
    pauseAfterPart = undefined;
    uppy.pauseResume(file.id);
    record('paused');
    show(`${file.name}: paused after part ${part.PartNumber}`);
  }
  if (part.PartNumber === cancelAfterPart) {
    cancelAfterPart = undefined;
    uppy.removeFile(file.id);
    record('cancelled');
    show(`${file.name}: cancelled after part ${part.PartNumber}`);
  }
});
uppy.on('upload-success', (file, response) => {
  record('success', { name: file?.name, body: response.body });
  show(`${file?.name}: uploaded`);
});
uppy.on('upload-error', (file, error) => {
  record('error', { name: file?.name, message: error.message });
  show(`${file?.name}: failed: ${error.message}`);
});

Object.assign(window, {
  harness: {
    events,
    /** Adds the page's test file (served at /file.bin) under `name`; returns Uppy's file id. */
    async add(name: string) {
      const data = await (await fetch('/file.bin')).blob();
      return uppy.addFile({ name, type: 'application/octet-stream', data });
    },
    /** Starts the upload of every added file; resolves when Uppy is done with them. */
    upload: () =>
      uppy.upload().then((result) => ({
        successful: result?.successful?.length ?? 0,
        failed: result?.failed?.length ?? 0,
      })),
    pauseAfter(partNumber: number) {
      pauseAfterPart = partNumber;
    },
    cancelAfter(partNumber: number) {
      cancelAfterPart = partNumber;
    },
    resume(fileId: string) {
      uppy.pauseResume(fileId);
      record('resumed');
    },
    isPaused: (fileId: string) => uppy.getFile(fileId)?.isPaused === true,
    /** Uppy's retry of a failed file; resolves as upload() does. */
    retry: (fileId: string) =>
      uppy.retryUpload(fileId).then((result) => ({
        successful: result?.successful?.length ?? 0,
        failed: result?.failed?.length ?? 0,
      })),
  },
});
