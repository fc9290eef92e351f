import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

/**
 * The shapes the route stack, its middlewares and the token check share. They live here, apart from
 * the code, so that lib/auth/ and lib/http/ can both use them without importing each other.
 */
export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResponse = APIGatewayProxyStructuredResultV2;

export interface RouteResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Set-Cookie values (API Gateway's payload 2.0 sends each as its own header). */
  cookies?: string[];
}

export interface Caller {
  username: string;
  tokenId: string;
  /** The token's sign-in, on routes that checked one (what renewing it carries over). */
  session?: CallerSession;
}

export interface CallerSession {
  /** When the password was checked (Unix seconds): the token's `auth_time`, or its `iat` if it has none. */
  signedInAt: number;
  /** The user's token version the token carries (`ver`): a revocation changes it. */
  tokenVersion: number;
  /** When the token expires (Unix seconds). */
  expiresAt: number;
  /** The sign-in's id (claim `sid`), which a sign-out ends; absent on tokens issued before sign-ins had one. */
  signInId?: string | undefined;
}

/**
 * Who sent a request, from its token headers or else its session cookie (the method decides whether
 * the cookie needs a CSRF token); throws 401 when no valid token says so.
 */
export type Authenticator = (
  headers: HttpEvent['headers'],
  session: { method: string; cookies: string[] | undefined },
) => Promise<Caller>;
