import type middy from '@middy/core';
import { HttpError } from '../errors.ts';
import type { HttpEvent, HttpResponse } from '../types.ts';
import { isMultipart } from './multipart.ts';

/** Refuses oversized forms before they are decoded (API Gateway would cut them off at 10 MB anyway). */
export const formSizeLimit = (
  maxBytes: number,
  message: string,
): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const { body, isBase64Encoded } = request.event;
    if (!body || !isMultipart(request.event)) return;
    const bytes = isBase64Encoded ? Math.floor((body.length * 3) / 4) : Buffer.byteLength(body);
    if (bytes > maxBytes) throw new HttpError(413, 'PayloadTooLarge', message);
  },
});
