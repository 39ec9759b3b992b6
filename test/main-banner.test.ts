/** The start-up banner says which upstream TLS rule is in force (issue 10 §12), and never a password. */
import { describe, expect, it } from 'vitest';
import { testConfig } from '../src/config.js';
import { channelBanner } from '../src/main.js';

describe('channelBanner: email line', () => {
  it.each([
    ['smtp://relay:pw-S3cret@mail.corp.example:587', false, 'email: live via smtp://mail.corp.example:587 (authenticated), STARTTLS required, certificate verified'],
    ['smtp://mail.corp.example:25', true, 'email: live via smtp://mail.corp.example:25, STARTTLS when offered, plain otherwise (RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true)'],
    ['smtps://relay:pw-S3cret@mail.corp.example:465', false, 'email: live via smtps://mail.corp.example:465 (authenticated), TLS (smtps), certificate verified'],
    ['smtp://127.0.0.1:2525', false, 'email: live via smtp://127.0.0.1:2525, STARTTLS when offered (loopback upstream)'],
  ])('%s (allow insecure: %s)', (smtpUpstream, smtpUpstreamAllowInsecure, line) => {
    const [email] = channelBanner(testConfig({ smtpUpstream, smtpUpstreamAllowInsecure }));
    expect(email).toBe(line);
    expect(email).not.toContain('S3cret');
  });
});
