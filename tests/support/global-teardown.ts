import type { LocalStack } from '../../scripts/local-stack.ts';

export default async function globalTeardown() {
  await (globalThis as { __LOCAL_STACK__?: LocalStack }).__LOCAL_STACK__?.stop();
}
