/** Mapping a submitted message and its envelope to an EmailSubmission. */
import MailComposer from 'nodemailer/lib/mail-composer';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { parseSubmission, type SmtpEnvelope } from '../../src/smtp/parse.js';

const env = (rcptTo: string[], mailFrom = 'ic@corp.example'): SmtpEnvelope => ({ mailFrom, rcptTo });
const raw = (lines: string[], body = 'Hello.') => Buffer.from([...lines, '', body, ''].join('\r\n'));

async function refused(promise: Promise<unknown>): Promise<RelayError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RelayError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('recipients come from the envelope', () => {
  it.each<[string, string[], string[], { to: string[]; cc: string[]; bcc: string[] }]>([
    ['To and Cc as in the headers', ['To: a@corp.example', 'Cc: b@corp.example'], ['a@corp.example', 'b@corp.example'], { to: ['a@corp.example'], cc: ['b@corp.example'], bcc: [] }],
    ['envelope-only is Bcc', ['To: a@corp.example'], ['a@corp.example', 'hidden@corp.example'], { to: ['a@corp.example'], cc: [], bcc: ['hidden@corp.example'] }],
    ['header-only is ignored', ['To: a@corp.example, extra@corp.example', 'Cc: other@corp.example'], ['a@corp.example'], { to: ['a@corp.example'], cc: [], bcc: [] }],
    ['case and duplicates fold', ['To: "A" <A@Corp.Example>'], ['a@corp.example', 'A@CORP.EXAMPLE'], { to: ['a@corp.example'], cc: [], bcc: [] }],
    ['groups are flattened', ['To: team: a@corp.example, b@corp.example;'], ['a@corp.example', 'b@corp.example'], { to: ['a@corp.example', 'b@corp.example'], cc: [], bcc: [] }],
    ['To wins over Cc', ['To: a@corp.example', 'Cc: a@corp.example, b@corp.example'], ['a@corp.example', 'b@corp.example'], { to: ['a@corp.example'], cc: ['b@corp.example'], bcc: [] }],
  ])('%s', async (_name, headers, rcptTo, expected) => {
    const { submission } = await parseSubmission(raw(['From: ic@corp.example', ...headers]), env(rcptTo));
    expect({ to: submission.to, cc: submission.cc, bcc: submission.bcc }).toEqual(expected);
  });

  it('refuses a message none of whose envelope recipients is in To:', async () => {
    const err = await refused(parseSubmission(raw(['From: ic@corp.example', 'To: undisclosed-recipients:;']), env(['a@corp.example'])));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/None of the envelope recipients is in the To: header/);
  });
});

describe('claimed senders', () => {
  it.each<[string, string[], string, string[]]>([
    ['MAIL FROM and From:', ['From: IC <IC@corp.example>'], 'ic@corp.example', ['ic@corp.example']],
    ['a different From:', ['From: sec@corp.example'], 'ic@corp.example', ['ic@corp.example', 'sec@corp.example']],
    ['every From: line, not just the last', ['From: ceo@corp.example', 'From: ic@corp.example'], 'ic@corp.example', ['ic@corp.example', 'ceo@corp.example']],
    ['Sender:', ['From: ic@corp.example', 'Sender: sec@corp.example'], 'ic@corp.example', ['ic@corp.example', 'sec@corp.example']],
    // An empty claim is still a claim that is not the authenticated address: rule `sender` refuses it.
    ['a From: without an address', ['From: nobody'], 'ic@corp.example', ['ic@corp.example', '']],
    ['a null MAIL FROM', ['From: ic@corp.example'], '', ['', 'ic@corp.example']],
  ])('%s', async (_name, headers, mailFrom, claimed) => {
    const { submission } = await parseSubmission(raw([...headers, 'To: a@corp.example']), env(['a@corp.example'], mailFrom));
    expect(submission.claimedSenders).toEqual(claimed);
  });
});

describe('content', () => {
  it('takes text, HTML, attachments and the subject, and nothing of the client headers', async () => {
    const composed = await new MailComposer({
      from: 'ic@corp.example',
      to: 'a@corp.example',
      subject: 'Breach =?at?= prod',
      text: 'plain body',
      html: '<p>html body</p>',
      headers: { 'X-Mailer': 'Outlook', 'User-Agent': 'Thunderbird', Received: 'from evil', 'X-Incident': 'amber-otter' },
      attachments: [
        { filename: 'timeline.txt', content: 'line\n', contentType: 'text/plain' },
        { filename: '../../etc/passwd', content: Buffer.from([0, 1, 2]), contentType: 'application/x-weird type' },
        { content: 'no name', contentType: 'text/csv' },
      ],
    })
      .compile()
      .build();
    const { submission, xIncident } = await parseSubmission(composed, env(['a@corp.example']));
    expect(submission.subject).toBe('Breach =?at?= prod');
    expect(submission.text.trim()).toBe('plain body');
    expect(submission.html?.trim()).toBe('<p>html body</p>');
    expect(submission.attachments.map((a) => [a.filename, a.contentType, a.content.toString('hex')])).toEqual([
      ['timeline.txt', 'text/plain', Buffer.from('line\n').toString('hex')],
      ['_.._etc_passwd', 'application/octet-stream', '000102'],
      ['attachment-3.csv', 'text/csv', Buffer.from('no name').toString('hex')],
    ]);
    expect(xIncident).toEqual(['amber-otter']);
    // The submission has no field a client header could land in; the client's Message-ID is kept only as an alias for chain lookups.
    expect(Object.keys(submission).sort()).toEqual(['attachments', 'bcc', 'cc', 'claimedSenders', 'clientMessageId', 'html', 'inReplyTo', 'references', 'subject', 'text', 'to']);
    expect(submission.clientMessageId).toMatch(/^<[^<>@]+@[^<>@]+>$/);
  });

  it('names an attachment that has no name', async () => {
    const mime = raw(
      ['From: ic@corp.example', 'To: a@corp.example', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"'],
      ['--b', 'Content-Type: text/plain', '', 'body', '--b', 'Content-Type: application/pdf', 'Content-Disposition: attachment', 'Content-Transfer-Encoding: base64', '', 'JVBERg==', '--b--'].join('\r\n'),
    );
    const { submission } = await parseSubmission(mime, env(['a@corp.example']));
    expect(submission.attachments.map((a) => [a.filename, a.contentType, a.content.toString()])).toEqual([['attachment-1', 'application/pdf', '%PDF']]);
  });

  it('decodes an encoded-word subject and drops control characters from it', async () => {
    const { submission } = await parseSubmission(raw(['From: ic@corp.example', 'To: a@corp.example', 'Subject: =?UTF-8?B?U3TDtnJ1bmcJaW4gcHJvZA==?=']), env(['a@corp.example']));
    expect(submission.subject).toBe('Störung in prod');
  });

  it('keeps In-Reply-To and References, and puts extra In-Reply-To parents in the chain', async () => {
    const { submission } = await parseSubmission(
      raw(['From: ic@corp.example', 'To: a@corp.example', 'In-Reply-To: <p1@corp.example> <p2@x.example>', 'References: <r1@corp.example>\r\n <r2@corp.example>']),
      env(['a@corp.example']),
    );
    expect(submission.inReplyTo).toBe('<p1@corp.example>');
    expect(submission.references).toEqual(['<r1@corp.example>', '<r2@corp.example>', '<p2@x.example>']);
  });

  it.each([
    ['In-Reply-To', 'In-Reply-To: no-at-sign'],
    ['References', 'References: <ok@corp.example> <bad>'],
    // Two '@': the composer could not write it, so it is refused here rather than after the rate limit.
    ['In-Reply-To', 'In-Reply-To: <a@b@c>'],
    ['References', 'References: <ok@corp.example> <a@b@c>'],
  ])('refuses a malformed %s (its chain could not be checked for externals)', async (header, line) => {
    const err = await refused(parseSubmission(raw(['From: ic@corp.example', 'To: a@corp.example', line]), env(['a@corp.example'])));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toContain(`The ${header} header holds`);
  });

  it('returns every X-Incident value', async () => {
    const { xIncident } = await parseSubmission(raw(['From: ic@corp.example', 'To: a@corp.example', 'X-Incident: amber-otter', 'X-Incident:  cobalt-heron ']), env(['a@corp.example']));
    expect(xIncident).toEqual(['amber-otter', 'cobalt-heron']);
  });
});
