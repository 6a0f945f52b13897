import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: files run in parallel processes, but numeric tests are CPU heavy.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    env: {
      // The SDK warns on every process that Node 20 support ends in 2027; tests need no reminder.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
