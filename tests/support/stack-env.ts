import type { StackInfo } from '../../scripts/local-stack.ts';

/** The running test stack, as described by the global setup. */
export function testStack(): StackInfo & { apiUrl: string } {
  const raw = process.env.TEST_STACK;
  if (!raw) throw new Error('TEST_STACK is not set: run this test through `npm test`');
  return JSON.parse(raw);
}
