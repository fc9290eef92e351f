import type { HttpEvent } from '../types.ts';

/** Whether the request says its body is `multipart/form-data` (headers are lower-cased by then). */
export const isMultipart = (event: HttpEvent) =>
  /^multipart\/form-data/i.test(event.headers?.['content-type'] ?? '');
