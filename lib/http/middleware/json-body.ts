import type middy from '@middy/core';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import { notAnObject } from '../errors.ts';
import type { HttpEvent, HttpResponse } from '../types.ts';

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether the request carried a body, whatever the event's `body` became. */
function bytesSent(headers: Record<string, string | undefined> | undefined): boolean {
  if (!headers) return false;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'content-length' && Number(value) > 0) return true;
    if (lower === 'transfer-encoding' && value) return true;
  }
  return false;
}

/**
 * middy's JSON body parser, and then: every JSON body this service takes is an object. A string,
 * number, array, boolean or null that parsed well is still refused, with a message that says so (a
 * JSON string once answered 415 on POST /upload, which takes forms too, as if it were not JSON).
 * Parsed or not is told by identity: the parser replaces the body only when it parsed it, and no
 * JSON text parses to the very same string. No body at all is not an object either, unless
 * `absentIsEmpty` says it stands for `{}` (a JSON `null` never does).
 */
export const jsonBody = (
  options: Parameters<typeof httpJsonBodyParser>[0] = {},
  absentIsEmpty = false,
): middy.MiddlewareObj<HttpEvent, HttpResponse> => {
  const parser = httpJsonBodyParser(options) as middy.MiddlewareObj<HttpEvent, HttpResponse>;
  return {
    before: async (request) => {
      // serverless-offline hands a JSON scalar it parsed itself (`false`, `0`) over as that value,
      // where API Gateway passes the text: made text again, it is answered as in AWS.
      const given: unknown = request.event.body;
      if (given != null && typeof given !== 'string') {
        (request.event as { body: unknown }).body = JSON.stringify(given);
      }
      const raw = request.event.body;
      // serverless-offline hands a body of JSON `null` over as no body at all; its headers still say
      // that bytes came. Such a body is refused below, as API Gateway's text `null` is.
      if (absentIsEmpty && (raw === '' || (raw == null && !bytesSent(request.event.headers)))) {
        (request.event as { body: unknown }).body = {};
        return;
      }
      if (raw == null && bytesSent(request.event.headers)) throw notAnObject();
      await parser.before?.(request);
      const body: unknown = request.event.body;
      if ((raw == null || body !== raw) && !isPlainObject(body)) throw notAnObject();
    },
  };
};
