import { Logger } from '@aws-lambda-powertools/logger';

/** One structured JSON logger per container; handlers add request-scoped keys through middleware. */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'file-jobs' });
