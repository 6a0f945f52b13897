import { defineConfig } from 'vitest/config';

const ISOLATED_UNIT_FILES = ['test/unit/engine/backend.test.ts'];

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
        // Unit test files share their worker processes: each file evaluating the same module graph
        // (TF.js, ONNX Runtime, sharp, the AWS SDK) in a fresh process cost more than their tests.
        // Measured on test/unit at load 14-17: 157 -> 88 s wall, 96 -> 55 CPU-seconds. A unit test
        // must therefore leave no process-wide state behind (backends, env, listeners, temp files).
        // backend.test.ts registers a stand-in native TF.js backend, so it runs alone.
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], exclude: [...ISOLATED_UNIT_FILES], isolate: false },
      },
      {
        // Integration and end-to-end files start servers, child processes and fault proxies, and
        // set process-wide state: each keeps a process of its own.
        extends: true,
        test: { name: 'isolated', include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts', ...ISOLATED_UNIT_FILES] },
      },
    ],
  },
});
