/**
 * An incident's private label (issue 12 §5) never reaches an outbound byte:
 * not a mail header or body, plain or encrypted (gpg decrypts to check the
 * inside too), not an SMS, not a Slack channel name, topic, welcome or any
 * other Slack call. Everything the upstream mail server, the fake Twilio and
 * the fake Slack received is searched for a marker that only the label holds.
 * And rule `codename` refuses a plain message whose own values would carry
 * the label onto the wire.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { createTwilioChannel } from '../../src/channels/sms/twilio.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { FAST_QUEUE } from '../channels/slack/harness.js';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs } from '../helpers/pgp-mime.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

// A word nothing else in the relay or these tests could produce.
const MARKER = 'Zqxlabelmarker';
const LABEL = `${MARKER} breach at Plant Seven`;
const FROM = '+15555550199';

let keyring: GpgHome;
let counsel: GeneratedKey;

beforeAll(async () => {
  keyring = await createGpgHome();
  counsel = await keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel');
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
});

describe.each(BACKENDS)('on %s', (backend) => {
  let upstream: Upstream;
  let twilio: FakeTwilio;
  let slack: FakeSlack;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let mail: ReturnType<typeof createSmtpChannel>;
  let ic: string;
  let codename: string;

  beforeEach(async () => {
    [upstream, twilio, slack] = await Promise.all([startUpstream(), startFakeTwilio(), startFakeSlack()]);
    for (const email of ['ic@corp.example', 'sec@corp.example']) slack.addUser(email);
    relay = await createTestRelay(
      {
        smtpUpstream: upstream.url,
        twilio: { accountSid: twilio.accountSid, authToken: twilio.authToken, from: FROM },
        twilioApiBaseUrl: twilio.url,
        slackBotToken: slack.token,
        slackApiUrl: slack.url,
      },
      { backend, slack: { queue: FAST_QUEUE } },
    );
    mail = createSmtpChannel(upstream.url);
    const sms = createTwilioChannel({ accountSid: twilio.accountSid, authToken: twilio.authToken, from: FROM, apiBaseUrl: twilio.url });
    worker = new DeliveryWorker(relay.ctx, { channels: { email: mail, sms }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    const created = await relay.request.post('/v1/incidents').set(auth(ic)).send({ label: LABEL });
    expect(created.status).toBe(201);
    expect(created.body.label).toBe(LABEL);
    codename = created.body.codename;
    for (const [email, body] of [
      ['sec@corp.example', { role: 'security', phone: '+15555550100' }],
      ['counsel@lawfirm.example', { role: 'external', name: 'Outside Counsel', publicKey: counsel.armoredPublic }],
    ] as const) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], ...body })).status).toBe(201);
    }
  });

  afterEach(async () => {
    await worker.stop();
    await relay.slack?.stop();
    mail.close();
    await Promise.all([upstream.stop(), twilio.stop(), slack.close()]);
  });

  const send = (body: Record<string, unknown>) => relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send(body);

  describe('the private label', () => {
    it('reaches no byte the upstream, Twilio or Slack receives, plain or encrypted, nor the inside of the encryption', async () => {
      const plain = await send({ to: ['sec@corp.example'], subject: 'Status', text: 'Rotate the keys.', attachments: [{ filename: 'notes.txt', contentType: 'text/plain', content: Buffer.from('n').toString('base64') }] });
      expect(plain.status).toBe(202);
      expect(plain.body.encrypted).toBe(false);
      const encrypted = await send({ to: ['counsel@lawfirm.example'], cc: ['sec@corp.example'], subject: 'Briefing', text: 'Call at 3pm.' });
      // sec@ has no key: encrypted mail needs every recipient's. To counsel alone, then.
      expect(encrypted.status).toBe(422);
      const sealed = await send({ to: ['counsel@lawfirm.example'], subject: 'Briefing', text: 'Call at 3pm.' });
      expect(sealed.body.encrypted).toBe(true);
      expect((await relay.request.post(`/v1/incidents/${codename}/sms`).set(auth(ic)).send({ to: 'roster' })).status).toBe(202);
      // The Slack room: created, topic, welcome, invites; then a roster change and a reopen drive it again.
      await relay.slack!.idle();
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' })).status).toBe(200);
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'open' })).status).toBe(200);
      await relay.slack!.idle();
      await worker.drain();

      const received = await upstream.waitFor(2);
      expect(twilio.delivered().map((r) => r.to)).toEqual(['+15555550100']);
      expect(slack.callsTo('conversations.create').length).toBeGreaterThanOrEqual(2);
      expect(slack.callsTo('conversations.setTopic').length).toBeGreaterThanOrEqual(2);

      const wire = [
        ...received.map((m) => m.raw.toString('latin1') + JSON.stringify({ from: m.from, to: m.to })),
        JSON.stringify(twilio.requests),
        JSON.stringify(slack.calls),
        JSON.stringify([...slack.channels.values()].map((c) => ({ ...c, members: [...c.members], pins: [...c.pins] }))),
      ].join('\n');
      expect(wire.toLowerCase()).not.toContain(MARKER.toLowerCase());
      expect(wire).not.toContain('Plant Seven');

      // Inside the encryption too: the relay never writes the label anywhere.
      const pgp = received.find((m) => m.raw.toString('latin1').includes('multipart/encrypted'))!;
      const inside = await decryptAs(keyring, counsel.fingerprint, await armoredPartOf(pgp.raw));
      expect(inside.plaintext.toString('utf8')).toContain('Call at 3pm.');
      expect(inside.plaintext.toString('utf8').toLowerCase()).not.toContain(MARKER.toLowerCase());
    });

    it('refuses a plain message whose topic, file name or a display name carries it (rule codename); inside the encryption it is the sender\'s own text', async () => {
      const topic = await send({ to: ['sec@corp.example'], subject: `Update on the ${MARKER.toUpperCase()} breach at plant seven`, text: 'x' });
      expect(topic.status).toBe(422);
      expect(topic.body.error).toMatchObject({ code: 'incident_details_exposed', rule: 'codename', details: { fields: ['subject'] } });
      expect(JSON.stringify(topic.body)).not.toContain(MARKER);
      const file = await send({ to: ['sec@corp.example'], text: 'x', attachments: [{ filename: `${LABEL}.txt`, contentType: 'text/plain', content: 'eA==' }] });
      expect(file.body.error).toMatchObject({ code: 'incident_details_exposed', details: { fields: ['attachments[0].filename'] } });
      expect((await relay.request.patch(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: LABEL })).status).toBe(200);
      const named = await send({ to: ['sec@corp.example'], text: 'x' });
      expect(named.body.error).toMatchObject({ code: 'incident_details_exposed', details: { fields: ['to[0].name'] } });
      // Encrypted, the topic travels inside: not the relay's to refuse.
      const sealed = await send({ to: ['counsel@lawfirm.example'], subject: LABEL, text: 'x' });
      expect(sealed.status).toBe(202);
      const decision = (await relay.ctx.store.audit.query({ type: 'email.decision', limit: 10 })).at(-1)!;
      expect((decision.data['rules'] as { rule: string; result: string; reason: string }[]).find((r) => r.rule === 'codename')).toMatchObject({ result: 'pass' });
      await worker.drain();
      expect(upstream.received).toHaveLength(1);
      expect(upstream.received[0]!.raw.toString('latin1').toLowerCase()).not.toContain(MARKER.toLowerCase());
    });
  });
});
