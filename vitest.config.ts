import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Every file gets its own process: tests install signal handlers, count
    // active handles and measure heap, which must not leak between files.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', './scripts/summary-reporter.mjs'],
    projects: [
      {
        extends: true,
        test: {
          name: 'packages',
          include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        // The end-to-end demo measures latency under a fixed load: it runs after the
        // package suites, one file at a time, so their load tests do not skew it.
        extends: true,
        test: {
          name: 'examples',
          include: ['examples/*/src/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
})
