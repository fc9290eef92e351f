import { IDEMPOTENCY_KEY_HEADER } from '../common/idempotency.ts';
import { badRequest } from '../lib/http/errors.ts';
import { idempotencyOf, replayHeaders } from '../lib/http/idempotency-key.ts';
import { httpRoute } from '../lib/http/route.ts';
import { parseRequest } from '../lib/http/validation.ts';
import { createUploadBody, createUploadForm } from '../lib/uploads/schemas.ts';
import { createFormUpload, createUpload } from '../lib/uploads/uploads.ts';

/** Lambda takes 6 MB of request; base64 makes 4 MiB of file about 5.4 MB. */
const FORM_MAX_BYTES = 4 * 1024 * 1024;

/**
 * POST /upload
 * - JSON {filename, size, contentType?, partSize?, overwrite?} -> 201 {job, uploadId, key, partSize,
 *   partCount, parts: [{partNumber, url, expiresAt}]}; the client PUTs each part to its URL. With an
 *   Idempotency-Key header, a repeat gets the first request's job (Idempotent-Replayed: true).
 * - multipart/form-data with a `file` field (the seed's form, small files) -> 201 {job, file}.
 */
export const handler = httpRoute(
  {
    body: createUploadBody,
    form: {
      maxBytes: FORM_MAX_BYTES,
      tooLargeMessage:
        'form uploads are limited to 4 MiB; for larger files POST /upload with JSON {"filename", "size"} and PUT the parts to the presigned URLs it returns',
    },
  },
  async ({ caller, body, form, event }) => {
    if (form) {
      // The form stores the file in the request itself: nothing a repeat could find again.
      if (idempotencyOf(event, {})) {
        throw badRequest(
          'ValidationError',
          `invalid request: the ${IDEMPOTENCY_KEY_HEADER} header applies to JSON uploads, not to forms`,
        );
      }
      const { form: fields } = parseRequest({ form: [createUploadForm, form] }) as {
        form: {
          file: { filename: string; mimetype?: string; content: Buffer };
          overwrite?: 'true' | 'false';
        };
      };
      const file = {
        filename: fields.file.filename,
        content: fields.file.content,
        contentType: fields.file.mimetype,
      };
      return {
        status: 201,
        body: await createFormUpload(caller.username, file, fields.overwrite === 'true'),
      };
    }
    const { replayed, ...created } = await createUpload(caller.username, body, idempotencyOf(event, body));
    return { status: 201, body: created, headers: replayHeaders(replayed) };
  },
);
