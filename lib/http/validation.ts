import type * as z from '../schema.ts';
import { badRequest } from './errors.ts';

export interface Issue {
  path: string;
  message: string;
}

type Part = [schema: z.ZodMiniType | undefined, value: unknown];

/**
 * Parses the parts of a request (body, query, path) with their schemas. Answers one 400 that names
 * every bad field of every part, so a client fixes its request in one round trip.
 */
export function parseRequest<K extends string>(parts: Record<K, Part>): Record<K, unknown> {
  const parsed = {} as Record<K, unknown>;
  const issues: Issue[] = [];
  for (const [where, [schema, value]] of Object.entries(parts) as [K, Part][]) {
    if (!schema) continue;
    const result = schema.safeParse(value);
    if (result.success) parsed[where] = result.data;
    else {
      for (const issue of result.error.issues) {
        issues.push({ path: [where, ...issue.path.map(String)].join('.'), message: issue.message });
      }
    }
  }
  if (issues.length > 0) {
    const summary = issues
      .slice(0, 3)
      .map((issue) => `${issue.path}: ${issue.message}`)
      .join('; ');
    throw badRequest('ValidationError', `invalid request: ${summary}`, { issues });
  }
  return parsed;
}
