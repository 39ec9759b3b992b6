import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A PostgreSQL server for the store and pipeline tests that run on it (test/setup/postgres.ts).
    globalSetup: ['test/setup/postgres.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // gpg agents and SMTP listeners are per-test; two cores, so keep parallelism modest.
    maxWorkers: 2,
  },
});
