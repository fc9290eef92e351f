import { DEMO_USER } from '../../scripts/local-stack.ts';
import { checkResponse } from './openapi.ts';
import { testStack } from './stack-env.ts';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface ApiRequest {
  method?: string;
  token?: string;
  headers?: Record<string, string>;
  /** Objects are sent as JSON; strings as they are. */
  body?: unknown;
}

/** One request to the running serverless-offline API; the answer's body parsed as JSON when it is. */
export async function api<T = any>(path: string, request: ApiRequest = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...request.headers };
  if (request.token) headers.authorization = `Bearer ${request.token}`;
  let body: string | FormData | undefined;
  if (typeof request.body === 'string' || request.body instanceof FormData) body = request.body;
  else if (request.body !== undefined) {
    body = JSON.stringify(request.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(`${testStack().apiUrl}${path}`, {
    method: request.method ?? 'GET',
    headers,
    body,
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text, the test will say so
  }
  checkResponse(request.method ?? 'GET', path, response.status, parsed);
  return { status: response.status, headers: response.headers, body: parsed as T };
}

export async function signIn(username = DEMO_USER.username, password = DEMO_USER.password): Promise<string> {
  const response = await api('/auth/signin', { method: 'POST', body: { username, password } });
  if (response.status !== 200)
    throw new Error(`sign-in failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.token;
}

/** Asserts the service's error shape and returns it. */
export function expectError(response: ApiResponse, status: number, code?: string) {
  expect({ status: response.status, body: response.body }).toMatchObject({
    status,
    body: {
      error: { code: code ?? expect.any(String), message: expect.any(String), requestId: expect.any(String) },
    },
  });
  return response.body.error as { code: string; message: string; requestId: string; details?: any };
}
