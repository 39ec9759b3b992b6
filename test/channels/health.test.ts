/**
 * ChannelHealth (issue 10 §10): one error line when a channel goes bad, one
 * info line when it recovers, never one per message; the counter and gauge
 * it drives; and what /healthz may show without a token.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { DeliveryError, type Channel } from '../../src/channels/channel.js';
import { ChannelHealth, watchChannel } from '../../src/channels/health.js';
import { createMetrics } from '../../src/metrics.js';

function setup() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const metrics = createMetrics(false);
  let now = new Date('2026-11-22T09:00:00Z');
  const health = new ChannelHealth({ logger, metrics, now: () => now });
  const metric = async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values.map((v) => [v.labels, v.value]);
  return { lines, metrics, health, metric, advance: (ms: number) => (now = new Date(now.getTime() + ms)) };
}

const authFailure = () => new DeliveryError('upstream unavailable: EAUTH 535 5.7.8 Authentication credentials invalid', true, undefined, { problem: 'auth', hint: "the upstream refused the relay's login (535): check the credentials in RELAY_SMTP_UPSTREAM" });
const tlsFailure = () => new DeliveryError('upstream unavailable: ETLS 454 TLS not available', true, undefined, { problem: 'tls', hint: 'TLS to the upstream failed (454): …' });

describe('ChannelHealth', () => {
  it('goes bad on the first upstream problem, logs once however many messages fail, and recovers on the next success', async () => {
    const { lines, health, metric, advance } = setup();
    health.track('email');
    expect(await metric('relay_channel_healthy')).toEqual([[{ channel: 'email' }, 1]]);
    expect(health.warnings()).toEqual([]);

    for (let i = 0; i < 5; i++) health.record('email', authFailure());
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 50,
      channel: 'email',
      problem: 'auth',
      msg: "email upstream unhealthy: the upstream refused the relay's login (535): check the credentials in RELAY_SMTP_UPSTREAM. Queued messages are kept and retried with backoff until RELAY_DELIVERY_MAX_AGE.",
    });
    expect(health.current('email')).toMatchObject({ problem: 'auth', failures: 5, since: new Date('2026-11-22T09:00:00Z'), lastError: expect.stringContaining('535') });
    expect(health.warnings()).toEqual([
      { channel: 'email', problem: 'auth', since: '2026-11-22T09:00:00.000Z', failures: 5, message: "the upstream refused the relay's login (535): check the credentials in RELAY_SMTP_UPSTREAM" },
    ]);
    expect(await metric('relay_channel_healthy')).toEqual([[{ channel: 'email' }, 0]]);
    expect(await metric('relay_upstream_failures_total')).toEqual([[{ channel: 'email', problem: 'auth' }, 5]]);

    advance(90_000);
    health.record('email', 'ok');
    health.record('email', 'ok');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 30, channel: 'email', problem: 'auth', failures: 5, downSeconds: 90, msg: 'email upstream recovered after 5 failed attempt(s); queued messages are going out' });
    expect(health.warnings()).toEqual([]);
    expect(await metric('relay_channel_healthy')).toEqual([[{ channel: 'email' }, 1]]);
  });

  it('a refusal of one message (no problem) neither makes a channel bad nor clears it', async () => {
    const { lines, health, metric } = setup();
    health.track('email');
    health.record('email', new DeliveryError('upstream refused: 550 5.1.1 mailbox unavailable', false));
    health.record('email', new DeliveryError('upstream unavailable: 451 try later', true));
    expect(health.warnings()).toEqual([]);
    expect(await metric('relay_upstream_failures_total')).toEqual([]);
    health.record('email', authFailure());
    health.record('email', new DeliveryError('upstream refused: 550 5.1.1 mailbox unavailable', false));
    expect(health.current('email')?.problem).toBe('auth');
    expect(lines).toHaveLength(1);
  });

  it('a new kind of problem is logged with its own hint, keeping when the channel went bad', () => {
    const { lines, health, advance } = setup();
    health.record('email', authFailure());
    advance(60_000);
    health.record('email', tlsFailure());
    expect(lines.map((l) => [l.level, l.problem])).toEqual([
      [50, 'auth'],
      [50, 'tls'],
    ]);
    expect(health.current('email')).toMatchObject({ problem: 'tls', failures: 2, since: new Date('2026-11-22T09:00:00Z') });
  });

  it('keeps channels apart', () => {
    const { health } = setup();
    health.record('sms', new DeliveryError("Twilio refused the relay's credentials (HTTP 401, error 20003)", true, undefined, { problem: 'auth', hint: 'check TWILIO_AUTH_TOKEN' }));
    health.record('email', 'ok');
    expect(health.warnings().map((w) => w.channel)).toEqual(['sms']);
  });

  it('warnings carry no upstream reply text, which /healthz would show to anyone', () => {
    const { health } = setup();
    health.record('email', new DeliveryError('upstream unavailable: EAUTH 535 5.7.8 user relay@mx1.internal.corp.example locked', true, undefined, { problem: 'auth', hint: 'check RELAY_SMTP_UPSTREAM' }));
    expect(JSON.stringify(health.warnings())).not.toContain('mx1.internal');
  });
});

describe('watchChannel', () => {
  it('records every outcome of the wrapped channel and passes errors through untouched', async () => {
    const { health } = setup();
    const failure = authFailure();
    let fail = true;
    const inner: Channel = {
      send: async () => {
        if (fail) throw failure;
        return { id: 'queued as 1', at: new Date() };
      },
    };
    const watched = watchChannel('email', inner, health);
    const delivery = { id: 'd1', envelope: { kind: 'email' as const, from: 'a@corp.example', to: ['b@corp.example'] }, body: Buffer.from('x') };
    await expect(watched.send(delivery)).rejects.toBe(failure);
    expect(health.current('email')?.problem).toBe('auth');
    fail = false;
    await expect(watched.send(delivery)).resolves.toMatchObject({ id: 'queued as 1' });
    expect(health.current('email')).toBeUndefined();
  });
});
