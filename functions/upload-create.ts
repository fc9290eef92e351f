import { httpRoute } from '../lib/http/route.ts';
import { parseRequest } from '../lib/http/validation.ts';
import { createUploadBody, createUploadForm } from '../lib/uploads/schemas.ts';
import { createFormUpload, createUpload } from '../lib/uploads/uploads.ts';

/** Lambda takes 6 MB of request; base64 makes 4 MiB of file about 5.4 MB. */
const FORM_MAX_BYTES = 4 * 1024 * 1024;

/**
 * POST /upload
 * - JSON {filename, size, contentType?, partSize?, overwrite?} -> 201 {job, uploadId, key, partSize,
 *   partCount, parts: [{partNumber, url, expiresAt}]}; the client PUTs each part to its URL.
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
  async ({ caller, body, form }) => {
    if (form) {
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
    return { status: 201, body: await createUpload(caller.username, body) };
  },
);
