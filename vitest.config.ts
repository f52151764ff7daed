import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: two files at a time keeps each one's timings honest.
    maxWorkers: 2,
    // CI asks for a JSON report beside the console one, to count the results.
    reporters: process.env.PADDOCK_TEST_REPORT ? ['default', 'json'] : ['default'],
    outputFile: process.env.PADDOCK_TEST_REPORT ? { json: process.env.PADDOCK_TEST_REPORT } : {},
  },
});
