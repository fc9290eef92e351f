import { readFileSync } from 'node:fs';
import { DEMO_USER } from '../../scripts/local-stack.ts';

/** Anything shaped like a JWT: three base64url segments, the first an encoded JSON header. */
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;

/** Lines of `text` that carry the demo password, a test user's password (pw-…) or a token. */
export function secretsIn(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.includes(DEMO_USER.password) || /pw-[0-9a-f]{8}-/.test(line) || JWT.test(line))
    .map((line) => line.slice(0, 300));
}

/** The handlers' structured log lines (JSON) captured so far in this run. */
export function handlerLogLines(): Record<string, any>[] {
  const text = readFileSync(process.env.TEST_LOG_FILE!, 'utf8');
  return text.split('\n').flatMap((line) => {
    const start = line.indexOf('{');
    if (start < 0) return [];
    try {
      return [JSON.parse(line.slice(start))];
    } catch {
      return [];
    }
  });
}

export const capturedLog = () => readFileSync(process.env.TEST_LOG_FILE!, 'utf8');
