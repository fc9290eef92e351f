import type { Context } from 'aws-lambda';
import type { HttpEvent } from './types.ts';

/** API Gateway's id for the request (what a client quotes back), else Lambda's. */
export const requestIdOf = (event: HttpEvent, context: Context): string =>
  event.requestContext?.requestId ?? context.awsRequestId;
