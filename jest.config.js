import { availableParallelism } from 'node:os';

// Jest in native ESM mode (run with NODE_OPTIONS=--experimental-vm-modules), TypeScript through @swc/jest.
// Type errors are caught by `npm run typecheck`, not here.
const transform = {
  '^.+\\.ts$': [
    '@swc/jest',
    { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } },
  ],
};
const common = { testEnvironment: 'node', extensionsToTreatAsEsm: ['.ts'], transform };

export default {
  testTimeout: 60_000,
  // Jest's own default (one worker per core but one) with a floor of two: the stack's files spend
  // most of their time waiting (on leases, caches, retries, the emulators), so on a two-core machine
  // two files at a time took the moto run from about 600 s to 350 s. Files that share the stack keep
  // to their own users (tests/unit/test-isolation.test.ts).
  maxWorkers: Math.max(2, availableParallelism() - 1),
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/tests/unit/**/*.test.ts'] },
    {
      ...common,
      // One emulator stack (S3, DynamoDB, serverless-offline) per run, shared by these tests.
      displayName: 'stack',
      // tests/browser: Chromium (playwright-core) against the same stack; skipped without a browser.
      testMatch: [
        '<rootDir>/tests/integration/**/*.test.ts',
        '<rootDir>/tests/e2e/**/*.test.ts',
        '<rootDir>/tests/browser/**/*.test.ts',
      ],
      globalSetup: '<rootDir>/tests/support/global-setup.ts',
      globalTeardown: '<rootDir>/tests/support/global-teardown.ts',
    },
  ],
};
