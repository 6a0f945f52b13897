import { defineConfig } from 'vitest/config';

/** Files that change process-wide state on purpose: backend.test.ts registers a stand-in native TF.js backend. */
const ISOLATED_FILES = ['test/unit/engine/backend.test.ts'];

export default defineConfig({
  test: {
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
    projects: [
      {
        // Test files share their worker processes, one file after another: each file evaluating the
        // same module graph (TF.js, ONNX Runtime, sharp, BullMQ, the AWS SDK) in a fresh process cost
        // more than many of their tests. Measured at load 10-18: test/unit 96 -> 54 CPU-seconds,
        // integration and e2e 361 -> 313. So a test file must leave no process-wide state behind
        // (TF.js backends, env, listeners, timers, temp files, open connections).
        extends: true,
        test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: [...ISOLATED_FILES], isolate: false },
      },
      {
        extends: true,
        test: { name: 'isolated', include: [...ISOLATED_FILES] },
      },
    ],
  },
});
