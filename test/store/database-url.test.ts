import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { redactDatabaseUrl } from '../../src/store/database-url.js';

describe('redactDatabaseUrl', () => {
  it.each([
    ['postgres://relay:s3cret@db.corp.example:5432/relay?sslmode=verify-full', 'postgres://relay:***@db.corp.example:5432/relay?sslmode=verify-full'],
    ['postgres://relay@db.corp.example/relay?password=s3cret&sslmode=verify-full', 'postgres://relay@db.corp.example/relay?password=***&sslmode=verify-full'],
    ['postgres://relay@db.corp.example/relay?sslpassword=s3cret&password=a&password=b', 'postgres://relay@db.corp.example/relay?sslpassword=***&password=***'],
    ['postgres://relay@127.0.0.1/relay', 'postgres://relay@127.0.0.1/relay'],
    ['not a url s3cret', 'postgres://(unparsable URL)'],
  ])('shows %s as %s', (url, shown) => {
    expect(redactDatabaseUrl(url)).toBe(shown);
    expect(redactDatabaseUrl(url)).not.toContain('s3cret');
  });
});

describe('the URL parser', () => {
  it('is the very copy pg connects with, so the TLS check judges what pg will do', () => {
    const require = createRequire(import.meta.url);
    const pgs = createRequire(require.resolve('pg')).resolve('pg-connection-string');
    expect(require.resolve('pg-connection-string')).toBe(pgs);
  });
});
