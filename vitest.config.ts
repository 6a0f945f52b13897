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
  },
});
