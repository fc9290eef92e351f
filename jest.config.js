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
