// Five suites, each runnable alone: `npx jest --selectProjects unit|integration|infra|browser|artifact`.
const transform = {
  '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' } }],
};
const common = { transform, extensionsToTreatAsEsm: ['.ts'], testEnvironment: 'node' };

export default {
  // Integration and infra tests start Java and bundle Lambdas; unit tests finish far below this.
  testTimeout: 120_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.test.ts'] },
    { ...common, displayName: 'infra', testMatch: ['<rootDir>/test/infra/**/*.test.ts'] },
    // The dashboard in Debian's Chromium (/usr/bin/chromium) against the local stack.
    { ...common, displayName: 'browser', testMatch: ['<rootDir>/test/browser/**/*.test.ts'] },
    // The synthesized bundles (cdk.out) on Node.js 22 against the local stand-ins.
    { ...common, displayName: 'artifact', testMatch: ['<rootDir>/test/artifact/**/*.test.ts'] },
  ],
};
