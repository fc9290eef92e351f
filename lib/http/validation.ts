import type { z } from '../schema.ts';
import { badRequest } from './errors.ts';

export interface Issue {
  path: string;
  message: string;
}

/** Parses one part of a request (body, query or path) or answers 400 naming every bad field. */
export function parseInput<S extends z.ZodMiniType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues: Issue[] = result.error.issues.map((issue) => ({
    path: [where, ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
  const summary = issues
    .slice(0, 3)
    .map((issue) => `${issue.path}: ${issue.message}`)
    .join('; ');
  return throwValidation(summary, issues);
}

function throwValidation(summary: string, issues: Issue[]): never {
  throw badRequest('ValidationError', `invalid request: ${summary}`, { issues });
}
