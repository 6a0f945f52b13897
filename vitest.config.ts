import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // expect.poll waits 1 s by default; a browser page loading its API on a loaded 2-core machine
    // takes longer (a gallery took more than 1 s to draw at load 6). A poll still fails on a wrong value.
    expect: { poll: { timeout: 15_000, interval: 100 } },
    // Files run in parallel processes. Four on two cores: many integration files wait on child
    // processes, Redis and S3 for much of their time. On an idle 2-core machine (905 tests, Node 20)
    // 4 workers ran the suite in 299 and 329 s, 3 workers in 331 s; earlier, 3 beat 2 (239 vs 296 s).
    pool: 'forks',
    maxWorkers: 4,
    reporters: ['default'],
    env: {
      // The SDK warns on every process that Node 20 support ends in 2027; tests need no reminder.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
