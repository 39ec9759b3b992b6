/**
 * How the SMTP channel reads a nodemailer failure (issue 10 §10) and how it
 * protects the path to the upstream (issue 10 §12): the failures are shaped
 * exactly as nodemailer 10's smtp-connection builds them (code, command,
 * response, responseCode, originalCode); test/e2e/upstream-health.test.ts
 * meets the same failures from real servers.
 */
import { describe, expect, it } from 'vitest';
import type { UpstreamProblem } from '../../../src/channels/channel.js';
import { classifySmtpError, credentialRedactor, upstreamTlsPolicy } from '../../../src/channels/email/smtp.js';

/** A nodemailer error as _formatError makes it: message plus ': ' plus the reply, the reply's code, the step. */
function smtpError(code: string, command: string, response?: string, extra: Record<string, unknown> = {}): Error {
  const responseCode = response ? Number(/^\d+/.exec(response)?.[0]) : undefined;
  return Object.assign(new Error(`failed${response ? `: ${response}` : ''}`), { code, command, ...(response ? { response, responseCode } : {}), ...extra });
}

describe('classifySmtpError: only a 5xx to MAIL FROM, RCPT TO or DATA is permanent', () => {
  it.each<[string, unknown]>([
    ['550 to MAIL FROM', smtpError('EENVELOPE', 'MAIL FROM', '550 5.7.1 sender rejected')],
    ['550 to every RCPT TO', smtpError('EENVELOPE', 'RCPT TO', '550 5.1.1 mailbox unavailable')],
    ['554 to DATA', smtpError('EENVELOPE', 'DATA', '554 5.5.1 no valid recipients')],
    ['552 to the end of DATA', smtpError('EMESSAGE', 'DATA', '552 5.3.4 message too big')],
    ['550 to the end of DATA', smtpError('EMESSAGE', 'DATA', '550 5.7.1 content rejected')],
    // nodemailer's own check against the SIZE the upstream announced: what its 552 would say.
    ['over the announced SIZE', smtpError('EMESSAGE', 'MAIL FROM', undefined)],
  ])('%s: permanent, no upstream problem', (_name, err) => {
    const mapped = classifySmtpError(err);
    expect(mapped.transient).toBe(false);
    expect(mapped.problem).toBeUndefined();
    expect(mapped.message).toMatch(/^upstream refused: /);
  });

  it.each<[string, UpstreamProblem | undefined, unknown]>([
    // The issue's case: a rotated service-account password.
    ['535 to AUTH PLAIN', 'auth', smtpError('EAUTH', 'AUTH PLAIN', '535 5.7.8 Authentication credentials invalid')],
    ['535 to AUTH LOGIN', 'auth', smtpError('EAUTH', 'AUTH LOGIN', '535 5.7.8 Authentication credentials invalid')],
    ['454 to AUTH', 'auth', smtpError('EAUTH', 'AUTH PLAIN', '454 4.7.0 Temporary authentication failure')],
    ['credentials nodemailer cannot use', 'auth', smtpError('EAUTH', 'API', undefined)],
    ['no AUTH offered but credentials needed', 'auth', smtpError('ENOAUTH', 'API', undefined)],
    ['530 to MAIL FROM (login required)', 'auth', smtpError('EENVELOPE', 'MAIL FROM', '530 5.7.0 Authentication required')],
    ['530 to MAIL FROM (RFC 3207 STARTTLS required)', 'tls', smtpError('EENVELOPE', 'MAIL FROM', '530 5.7.0 Must issue a STARTTLS command first')],
    ['554 greeting', 'greeting', smtpError('EPROTOCOL', 'CONN', '554 go away')],
    ['421 greeting', 'unavailable', smtpError('EPROTOCOL', 'CONN', '421 4.3.2 try later')],
    ['EHLO refused under requireTLS', 'greeting', smtpError('ECONNECTION', 'EHLO', '550 5.7.1 not you')],
    ['HELO refused after EHLO', 'greeting', smtpError('EPROTOCOL', 'HELO', '501 5.5.4 no')],
    ['STARTTLS refused (454)', 'tls', smtpError('ETLS', 'STARTTLS', '454 4.7.0 TLS not available')],
    ['STARTTLS not offered but required (502)', 'tls', smtpError('ETLS', 'STARTTLS', '502 5.5.1 command not implemented')],
    ['STARTTLS certificate not trusted', 'tls', smtpError('ETLS', 'STARTTLS', undefined, { message: 'Error initiating TLS - self-signed certificate' })],
    ['smtps:// certificate not trusted', 'tls', smtpError('ESOCKET', 'CONN', undefined, { originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' })],
    ['smtps:// certificate for another host', 'tls', smtpError('ESOCKET', 'CONN', undefined, { originalCode: 'ERR_TLS_CERT_ALTNAME_INVALID' })],
    ['smtps:// to a plain port', 'tls', smtpError('ESOCKET', 'CONN', undefined, { originalCode: 'ERR_SSL_WRONG_VERSION_NUMBER' })],
    ['connection refused', 'connection', smtpError('ESOCKET', 'CONN', undefined, { originalCode: 'ECONNREFUSED' })],
    ['DNS', 'connection', smtpError('EDNS', 'CONN', undefined, { originalCode: 'ENOTFOUND' })],
    ['greeting or socket timeout', 'connection', smtpError('ETIMEDOUT', 'CONN', undefined)],
    ['connection dropped', 'connection', smtpError('ECONNECTION', 'CONN', undefined)],
    ['421 mid-session', 'unavailable', smtpError('ECONNECTION', 'CONN', '421 4.4.2 idle too long')],
    ['421 to MAIL FROM', 'unavailable', smtpError('EENVELOPE', 'MAIL FROM', '421 4.7.0 too many connections')],
    ['an unexpected 2xx', 'protocol', smtpError('EPROTOCOL', 'CONN', '250 hello?')],
    ['not an Error at all', 'connection', 'boom'],
    // Deferrals of this one message: retried, but the upstream works.
    ['451 to DATA', undefined, smtpError('EMESSAGE', 'DATA', '451 4.3.0 try again later')],
    ['450 to every RCPT TO', undefined, smtpError('EENVELOPE', 'RCPT TO', '450 4.2.1 mailbox busy')],
    // RFC 5321 503 is the session's state, not the message: nodemailer's isPermanentResponseCode agrees.
    ['503 to DATA', undefined, smtpError('EENVELOPE', 'DATA', '503 5.5.1 bad sequence of commands')],
    ['an envelope nodemailer will not send', undefined, smtpError('EENVELOPE', 'API', undefined)],
  ])('%s: transient, problem %s', (_name, problem, err) => {
    const mapped = classifySmtpError(err);
    expect(mapped.transient).toBe(true);
    expect(mapped.problem).toBe(problem);
    expect(mapped.message).toMatch(/^upstream unavailable: /);
    if (problem) expect(mapped.hint).toEqual(expect.any(String));
  });

  it('hints name the setting to check and the reply code', () => {
    expect(classifySmtpError(smtpError('EAUTH', 'AUTH PLAIN', '535 5.7.8 nope')).hint).toBe("the upstream refused the relay's login (535): check the credentials in RELAY_SMTP_UPSTREAM");
    expect(classifySmtpError(smtpError('EPROTOCOL', 'CONN', '554 go away')).hint).toBe('the upstream refused the session (554): check that it accepts mail from this host');
    expect(classifySmtpError(smtpError('ETLS', 'STARTTLS', '502 5.5.1 no')).hint).toMatch(/^TLS to the upstream failed \(502\): .*RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true/);
    expect(classifySmtpError(smtpError('ESOCKET', 'CONN', undefined, { originalCode: 'ECONNREFUSED' })).hint).toBe(
      'cannot reach the upstream (ECONNREFUSED): check the host and port in RELAY_SMTP_UPSTREAM and the network path to it',
    );
  });

  it('keeps the text to one line of at most 300 characters, after removing the credentials', () => {
    const pass = 's3cret-Pa55';
    const redact = credentialRedactor('relay@corp.example', pass);
    const long = `535 5.7.8 ${'x'.repeat(290)}${pass}\r\nsecond line`;
    const mapped = classifySmtpError(smtpError('EAUTH', 'AUTH PLAIN', long), redact);
    expect(mapped.message).not.toContain('s3cret');
    expect(mapped.message).not.toMatch(/[\r\n]/);
    expect(mapped.message.length).toBeLessThanOrEqual('upstream unavailable: EAUTH '.length + 300);
  });
});

describe('credentialRedactor', () => {
  const user = 'relay@corp.example';
  const pass = 'p@ss:w/rd';
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  it.each([
    ['the password', `535 bad password ${pass}`],
    ['AUTH PLAIN as nodemailer sends it', `500 5.5.1 unrecognized command AUTH PLAIN ${b64(`\u0000${user}\u0000${pass}`)}`],
    ['AUTH PLAIN with an authzid', `500 5.5.1 unrecognized command AUTH PLAIN ${b64(`${user}\u0000${user}\u0000${pass}`)}`],
    ['AUTH LOGIN password line', `500 5.5.1 unrecognized command ${b64(pass)}`],
    ['URL-encoded, as written in RELAY_SMTP_UPSTREAM', `bad url ${encodeURIComponent(pass)}`],
  ])('removes %s', (_name, text) => {
    const out = credentialRedactor(user, pass, encodeURIComponent(pass))(text);
    expect(out).toContain('[redacted]');
    expect(out).not.toContain(pass);
    expect(out).not.toContain(encodeURIComponent(pass));
    expect(out).not.toContain(b64(pass).replace(/=+$/, ''));
  });

  it('leaves text alone when there is no password', () => {
    expect(credentialRedactor('', '')('535 5.7.8 nope')).toBe('535 5.7.8 nope');
  });
});

describe('upstreamTlsPolicy: STARTTLS required off loopback unless RELAY_SMTP_UPSTREAM_ALLOW_INSECURE', () => {
  it.each<[string, boolean, { secure: boolean; requireTLS: boolean; reason: string }]>([
    ['smtp://mail.corp.example:587', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://relay:pw@mail.corp.example:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://10.0.0.5:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://192.0.2.2:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://[fd00::2]:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    // "All interfaces" is not loopback; neither are names that merely look like it.
    ['smtp://0.0.0.0:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://[::]:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://localhost.corp.example:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://127.0.0.1.nip.io:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    // Only the dotted-quad spelling is read as an address; a short form is a name to resolve.
    ['smtp://127.1:25', false, { secure: false, requireTLS: true, reason: 'required' }],
    ['smtp://mail.corp.example:587', true, { secure: false, requireTLS: false, reason: 'allowed-insecure' }],
    ['smtp://127.0.0.1:2525', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtp://127.8.9.10:25', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtp://[::1]:25', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtp://[::ffff:127.0.0.1]:25', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtp://localhost:25', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtp://LocalHost:25', false, { secure: false, requireTLS: false, reason: 'loopback' }],
    ['smtps://mail.corp.example:465', false, { secure: true, requireTLS: false, reason: 'smtps' }],
    ['smtps://mail.corp.example:465', true, { secure: true, requireTLS: false, reason: 'smtps' }],
  ])('%s (allow insecure: %s)', (url, allowInsecure, expected) => {
    expect(upstreamTlsPolicy(url, allowInsecure)).toMatchObject(expected);
  });

  it('says in words what is in force, for the banner', () => {
    expect(upstreamTlsPolicy('smtp://mail.corp.example', false).description).toBe('STARTTLS required, certificate verified');
    expect(upstreamTlsPolicy('smtps://mail.corp.example', false).description).toBe('TLS (smtps), certificate verified');
    expect(upstreamTlsPolicy('smtp://127.0.0.1', false).description).toBe('STARTTLS when offered (loopback upstream)');
    expect(upstreamTlsPolicy('smtp://mail.corp.example', true).description).toBe('STARTTLS when offered, plain otherwise (RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true)');
  });
});
