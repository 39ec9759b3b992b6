/**
 * A chosen codename is taken only when the generator could have made it
 * (issue 10 item 4): `customer-db-breach` matches Slack's character rules but
 * would name the incident's channel after what happened.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let relay: TestRelay;
let ic: string;
beforeEach(async () => {
  relay = await createTestRelay();
  ic = await relay.tokenFor('ic@corp.example');
});

async function incidents(): Promise<string[]> {
  const res = await relay.request.get('/v1/incidents').set(auth(ic));
  expect(res.status).toBe(200);
  return (res.body.incidents as Array<{ codename: string }>).map((i) => i.codename);
}

describe('POST /v1/incidents with a chosen codename', () => {
  it.each(['customer-db-breach', 'prod-db-leak', 'ransomware', 'quiet-heron', 'otter-amber', 'amber-otter-1', 'amber-otter-02'])('refuses %s, says how codenames are made, creates nothing', async (codename) => {
    const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename });
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual({
      code: 'invalid_request',
      message: "Codenames are built from the relay's word lists, e.g. sapphire-unicorn or amber-otter-2, so they say nothing about the incident; leave it out to get one.",
      details: { field: 'codename' },
    });
    expect(await incidents()).toEqual([]);
  });

  it.each(['sapphire-unicorn', 'amber-otter-2'])('takes %s', async (codename) => {
    const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename });
    expect(res.status).toBe(201);
    expect(res.body.codename).toBe(codename);
    expect(await incidents()).toEqual([codename]);
  });
});
