/**
 * Preloaded into serverless-offline (`--import`, scripts/local-stack.ts): a request Node's HTTP
 * parser refuses before any route sees it (a control character in a header value, a header block
 * over Node's limit, a request line that is not HTTP) is answered in the service's JSON error shape,
 * not with hapi's bare `400 Bad Request` and no body, which no client of this API can parse. In AWS,
 * API Gateway refuses such requests itself; this only keeps the local stack's answers one shape.
 *
 * hapi registers its `clientError` listener on the server it creates with `http.createServer`; the
 * server made here takes this listener in its place.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';

const REASONS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'HeadersTooLarge', 'the request headers are larger than the server takes'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'RequestTimeout', 'the request did not arrive in time'],
};

function answer(error: Error & { code?: string }, socket: Duplex) {
  if (!socket.writable) {
    socket.destroy(error);
    return;
  }
  const [status, code, message] = REASONS[error.code ?? ''] ?? [
    400,
    'ValidationError',
    'the request is not valid HTTP (a header or the request line holds a character HTTP does not allow)',
  ];
  // No route ran, so no request id was made: one is made here, as API Gateway makes one for its own refusals.
  const body = JSON.stringify({ error: { code, message, requestId: randomUUID() } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

const createServer = http.createServer;
http.createServer = function createServerAnsweringJson(this: unknown, ...args: unknown[]) {
  const server = (createServer as (...a: unknown[]) => http.Server).apply(this, args);
  const on = server.on;
  server.on = function onClientErrorAnsweringJson(this: http.Server, event: string, listener: unknown) {
    return (on as (event: string, listener: unknown) => http.Server).call(
      this,
      event,
      event === 'clientError' ? answer : listener,
    );
  } as typeof server.on;
  return server;
} as typeof http.createServer;
